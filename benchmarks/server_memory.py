"""Memory of the reference server under overload with long audio: bounded by --memory-budget-mb?

Two loads, each against two servers started in the same run on the same machine:

* **bounded**: the defaults (``--memory-budget-mb 1024`` unless ``--budget-mb`` says otherwise);
* **unbounded**: ``--memory-budget-mb 1000000`` (no memory admission, only ``--max-queue``),
  which is what the server did before memory admission existed.

Loads (bounded in count and time; loopback only):

* ``uploads``: ``--uploads`` clients (default 12) each posting a ``--minutes``-long
  (default 19) 16 kHz PCM16 WAV to /recognize back to back: far more than the worker
  can decode and transcribe at once (2x overload and more);
* ``streams``: ``--streams`` WebSocket sessions (default 8) each sending the same audio
  as 10 s PCM16 chunks as fast as the server answers, then ``end``.

The resident set (RSS) of the server's whole process tree is sampled every 50 ms. Printed
per server: RSS when idle after a warm-up request (ONNX Runtime's arena at its largest batch shape), peak RSS under the load, the growth (peak - idle)
and its ratio to the budget, and what the clients got (200, 503, other). The bound the docs
state: peak - idle <= budget x 1.5 (reservations count the audio arrays a request or stream
holds; allocator slack, WebSocket receive buffers and the runner's padded batches come on top).

    python benchmarks/server_memory.py                         # both loads, ~3 minutes on 2 cores
    python benchmarks/server_memory.py --load streams --json out.json
    python benchmarks/server_memory.py --load tts-cache --cache-mb 64   # the --cache memory:SIZE bound
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BOUND_FACTOR = 1.5


def long_audio(minutes: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    n = int(minutes * 60 * 16000)
    t = np.arange(n) / 16000
    x = 0.2 * np.sin(2 * np.pi * 180 * t) + 0.02 * rng.standard_normal(n)
    return (x * 32767).astype("<i2")


def wav_bytes(pcm: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, pcm, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class RssSampler(threading.Thread):
    def __init__(self, pid: int, period_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.period_s = period_s
        self.peak = 0
        self.stop_event = threading.Event()

    def rss(self) -> int:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.period_s)


def run_uploads(url: str, wav: bytes, clients: int, seconds: float, max_requests: int) -> dict[str, int]:
    import httpx

    counts: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    sent = [0]

    def client() -> None:
        with httpx.Client(base_url=url, timeout=seconds + 120, trust_env=False) as c:
            while time.monotonic() < deadline:
                with lock:
                    if sent[0] >= max_requests:
                        return
                    sent[0] += 1
                try:
                    code = str(c.post("/recognize", files={"file": ("long.wav", wav, "audio/wav")}).status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                with lock:
                    counts[code] = counts.get(code, 0) + 1
                if code == "503":
                    time.sleep(1.0)  # Retry-After

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def run_streams(url: str, pcm: np.ndarray, streams: int, seconds: float) -> dict[str, int]:
    from websockets.sync.client import connect

    counts: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    chunk = 16000 * 10
    raw = pcm.tobytes()

    def stream() -> None:
        from websockets.exceptions import ConnectionClosed

        outcome, refused_partials = "final", 0
        try:
            with connect(url.replace("http://", "ws://") + "/ws/asr", open_timeout=30, close_timeout=5,
                         max_size=None) as ws:
                try:
                    for i in range(0, len(raw), 2 * chunk):
                        if time.monotonic() > deadline:
                            outcome = "cut_by_benchmark"
                            break
                        ws.send(raw[i:i + 2 * chunk])
                        msg = json.loads(ws.recv(timeout=120))
                        if msg["type"] == "error":
                            refused_partials += 1  # e.g. queue_full for a partial: the stream goes on
                    else:
                        ws.send(json.dumps({"type": "end"}))
                        while (msg := json.loads(ws.recv(timeout=300)))["type"] not in ("final", "error"):
                            pass
                        if msg["type"] == "error":
                            outcome = f"final refused: {msg['error']['code']}"
                except ConnectionClosed as exc:
                    outcome = f"closed {exc.rcvd.code if exc.rcvd else 'without a close frame'}"
        except Exception as exc:  # noqa: BLE001 - counted, printed
            outcome = type(exc).__name__
        with lock:
            counts[outcome] = counts.get(outcome, 0) + 1
            counts["partials refused"] = counts.get("partials refused", 0) + refused_partials

    threads = [threading.Thread(target=stream) for _ in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def run_tts_catalog(url: str, clients: int, seconds: float, catalog: int) -> dict[str, int]:
    """Distinct texts drawn uniformly from a large catalog: the memory level fills, then evicts."""
    import random

    import httpx

    counts: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as c:
            while time.monotonic() < deadline:
                i = rng.randrange(catalog)
                text = f"catalog entry {i}: " + " ".join(f"word{(i * 7 + k) % 997}" for k in range(40))
                r = c.post("/api/synthesize", json={"text": text[:480]})
                key = f"{r.status_code} {r.headers.get('x-cache', '-')}"
                with lock:
                    counts[key] = counts.get(key, 0) + 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def _gauge(url: str, name: str) -> float:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", trust_env=False).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def measure(load: str, budget_mb: float, args: argparse.Namespace, pcm: np.ndarray, wav: bytes) -> dict[str, Any]:
    from reference_server.launcher import EmbeddedServer

    if load == "tts-cache":
        extra_cache = ["--cache", f"memory:{args.cache_mb:g}MiB"] if budget_mb == args.budget_mb else []
    else:
        extra_cache = []
    extra = [*extra_cache, "--memory-budget-mb", str(budget_mb), "--max-audio-s", "1200", "--max-body-mb", "100",
             "--threads", "1", "--request-timeout-s", "600", "--max-streams", str(max(args.streams, 32))]
    with EmbeddedServer("tiny", extra_args=extra, ready_timeout_s=300) as srv:
        sampler = RssSampler(srv.pid)
        # warm-up: one long request alone grows ONNX Runtime's arena to the largest batch shape
        # (--max-batch x 30 s segments) once; what the load adds on top is what admission bounds
        if load == "tts-cache":  # the TTS model's arena at its largest shape, without filling the cache
            import httpx

            with httpx.Client(base_url=srv.url, timeout=120, trust_env=False) as c:
                for i in range(8):
                    c.post("/api/synthesize", json={"text": ("warm up %d " % i) * 40})
        else:
            run_uploads(srv.url, wav, 1, 600, 1)
        time.sleep(1.0)
        idle = sampler.rss()
        sampler.start()
        t0 = time.monotonic()
        if load == "uploads":
            counts = run_uploads(srv.url, wav, args.uploads, args.seconds, args.max_requests)
        elif load == "tts-cache":
            counts = run_tts_catalog(srv.url, 4, args.seconds, args.catalog)
            counts["cache_memory_bytes"] = int(_gauge(srv.url, "asrtk_cache_memory_bytes"))
            counts["evictions"] = int(_gauge(srv.url, "asrtk_cache_evictions_total"))
        else:
            counts = run_streams(srv.url, pcm, args.streams, args.seconds)
        took = time.monotonic() - t0
        sampler.stop_event.set()
        sampler.join()
    growth = sampler.peak - idle
    return {"load": load, "budget_mb": budget_mb, "idle_rss_mb": idle / 2**20, "peak_rss_mb": sampler.peak / 2**20,
            "growth_mb": growth / 2**20, "growth_over_budget": growth / (budget_mb * 2**20), "outcomes": counts,
            "seconds": round(took, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--load", choices=("uploads", "streams", "both", "tts-cache"), default="both",
                    help="tts-cache: a TTS catalog far larger than --cache memory:SIZE; the bounded server runs "
                         "the cache, the other none: the growth difference is what the cache holds")
    ap.add_argument("--cache-mb", type=float, default=64.0, help="tts-cache: the memory level's size")
    ap.add_argument("--catalog", type=int, default=20000, help="tts-cache: distinct texts")
    ap.add_argument("--budget-mb", type=float, default=1024.0, help="--memory-budget-mb of the bounded server")
    ap.add_argument("--minutes", type=float, default=19.0, help="length of each upload / stream")
    ap.add_argument("--uploads", type=int, default=12, help="parallel upload clients")
    ap.add_argument("--max-requests", type=int, default=400, help="uploads in all, per server (503s included)")
    ap.add_argument("--streams", type=int, default=8, help="parallel WebSocket sessions")
    ap.add_argument("--seconds", type=float, default=60.0, help="time bound of each load")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    pcm = long_audio(args.minutes)
    wav = wav_bytes(pcm)
    print(f"audio: {args.minutes:g} min, WAV {len(wav) / 2**20:.1f} MiB", flush=True)
    loads = ("uploads", "streams") if args.load == "both" else (args.load,)
    rows = []
    for load in loads:
        for budget in (args.budget_mb, 1_000_000.0):
            row = measure(load, budget, args, pcm, wav)
            rows.append(row)
            label = "bounded" if budget == args.budget_mb else "unbounded"
            print(f"{load:8s} {label:9s} budget {budget:9g} MiB: idle {row['idle_rss_mb']:7.0f} MiB, "
                  f"peak {row['peak_rss_mb']:7.0f} MiB, growth {row['growth_mb']:7.0f} MiB "
                  f"({row['growth_over_budget']:.2f} x budget), {row['seconds']} s, outcomes {row['outcomes']}",
                  flush=True)
    ok = True
    if args.load == "tts-cache":
        cached = next(r for r in rows if r["budget_mb"] == args.budget_mb)
        plain = next(r for r in rows if r["budget_mb"] != args.budget_mb)
        held = cached["outcomes"]["cache_memory_bytes"] / 2**20
        extra_rss = cached["growth_mb"] - plain["growth_mb"]
        within = held <= args.cache_mb and extra_rss <= BOUND_FACTOR * args.cache_mb
        print(f"tts-cache: memory level holds {held:.1f} MiB of {args.cache_mb:g} MiB "
              f"({cached['outcomes']['evictions']} evictions); RSS growth with the cache - without = {extra_rss:.0f} MiB; "
              f"bound (<= {BOUND_FACTOR} x SIZE): {'holds' if within else 'BROKEN'}")
        if args.json:
            args.json.write_text(json.dumps({"rows": rows, "bound_holds": within}, indent=2))
        return 0 if within else 3
    for load in loads:
        bounded = next(r for r in rows if r["load"] == load and r["budget_mb"] == args.budget_mb)
        unbounded = next(r for r in rows if r["load"] == load and r["budget_mb"] != args.budget_mb)
        within = bounded["growth_over_budget"] <= BOUND_FACTOR
        ok &= within
        print(f"{load}: bounded growth / unbounded growth = {bounded['growth_mb'] / max(unbounded['growth_mb'], 1):.2f}; "
              f"bound (growth <= {BOUND_FACTOR} x budget): {'holds' if within else 'BROKEN'}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "bound_factor": BOUND_FACTOR, "bound_holds": ok}, indent=2))
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
