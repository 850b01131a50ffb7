"""How much of raw ONNX Runtime throughput survives the reference server, and what batching buys.

Measured in ONE run, same machine, same model, same batch size:

* overhead ratio = server throughput at saturation (many concurrent HTTP clients posting
  fixed-length WAV clips to /recognize) / raw in-process ``AsrRunner`` throughput
  (batches of ``--max-batch`` clips back to back). Target: >= 0.85 for ``small`` on CPU.
* batching speed-up = server throughput with ``--max-batch N`` / with ``--max-batch 1``.

The machine may be shared: measurements are interleaved in rounds (raw, server with
batching, server without) with both servers up, and each ratio is taken within a round,
so slow drift in background load cancels; the median and range over rounds are printed.

The load generator runs on the same machine (asyncio streams, the multipart request
built once), so on a small box part of the gap is still the client's own CPU: the client's
CPU is printed next to the ratio.

    python benchmarks/server_overhead.py                       # tiny and small, 4 s clips
    python benchmarks/server_overhead.py --preset small --clip-s 8 --duration-s 30
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def clip(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.2 * np.sin(2 * np.pi * 180 * t) + 0.02 * rng.standard_normal(t.shape[0])).astype(np.float32)


def wav_bytes(x: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class RawRunner:
    """AsrRunner alone, in this process: batches of identical clips back to back."""

    def __init__(self, preset: str, x: np.ndarray, threads: int | None) -> None:
        from reference_server import models as M

        bundle = M.ensure_models(preset)
        session = M.create_session(bundle.paths["asr"], ["CPUExecutionProvider"], threads)
        self.runner = M.AsrRunner(session, bundle.asr_vocab)
        # the server decodes PCM16 WAV, so feed the runner the same quantised samples
        self.x = (np.round(x * 32767) / 32768).astype(np.float32)

    def throughput(self, batch: int, duration_s: float) -> float:
        self.runner.run([self.x] * batch)  # warm-up of this shape
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < duration_s:
            self.runner.run([self.x] * batch)
            done += batch
        return done / (time.perf_counter() - t0)


def multipart_request(url: str, body: bytes) -> bytes:
    """The whole POST /recognize request (multipart upload), built once and sent as it is."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    boundary = "asrtkbenchboundary7d3c"
    payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.wav\"\r\n"
               f"Content-Type: audio/wav\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /recognize HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload


async def _load(url: str, body: bytes, concurrency: int, warmup_s: float, duration_s: float) -> tuple[float, int]:
    """Requests/s at saturation, measured between two completions.

    With batching, responses arrive in bursts of up to max-batch; a fixed window would
    count a random number of bursts. So the window runs from the last completion before
    ``warmup_s`` to the last one before ``warmup_s + duration_s``: whole batch periods only.

    The client shares the machine with the server, so it is lean: one keep-alive connection per
    client, the request bytes built once, the response read by its Content-Length (an httpx
    client with a multipart body per request took 0.31 of the 2 cores from the server on tiny).
    """
    from urllib.parse import urlsplit

    u = urlsplit(url)
    request = multipart_request(url, body)
    done_at: list[float] = []
    errors = 0
    t_start = time.perf_counter()
    t_from, t_to = t_start + warmup_s, t_start + warmup_s + duration_s

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        try:
            while time.perf_counter() < t_to:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                await reader.readexactly(length)
                if status == 200:
                    done_at.append(time.perf_counter())
                else:
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    before = [t for t in done_at if t < t_from]
    inside = [t for t in done_at if t_from <= t <= t_to]
    if not inside:
        return 0.0, errors
    t0 = before[-1] if before else inside.pop(0)
    t1 = inside[-1]
    return (len(inside) / (t1 - t0) if t1 > t0 else 0.0), errors


def start_server(preset: str, batch: int, concurrency: int, threads: int | None) -> "EmbeddedServer":  # noqa: F821
    from reference_server.launcher import EmbeddedServer

    args = ["--device", "cpu", "--max-batch", str(batch), "--max-queue", str(max(64, 4 * concurrency)),
            "--log-level", "warning"]
    if threads:
        args += ["--threads", str(threads)]
    return EmbeddedServer(preset, extra_args=args, ready_timeout_s=300).start()


def measure(srv: "EmbeddedServer", body: bytes, concurrency: int, warmup_s: float, duration_s: float) -> tuple[float, int, float]:  # noqa: F821
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    rps, errors = asyncio.run(_load(srv.url, body, concurrency, warmup_s, duration_s))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return rps, errors, client_cpu / (warmup_s + duration_s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", action="append", help="repeatable; default: tiny and small")
    p.add_argument("--clip-s", type=float, default=4.0)
    p.add_argument("--duration-s", type=float, default=24.0, help="measured time per configuration, split over rounds")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (raw, server b N, server b 1): drift cancels")
    p.add_argument("--warmup-s", type=float, default=1.0, help="per server measurement")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=0, help="HTTP clients; default 2 x max-batch")
    p.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (raw and server alike)")
    p.add_argument("--json", type=Path, help="write the figures to this file: {preset: median overhead ratio, "
                   "'details': {preset: {overhead, speedup, per round}}}")
    a = p.parse_args(argv)
    presets = a.preset or ["tiny", "small"]
    concurrency = a.concurrency or 2 * a.max_batch
    x = clip(a.clip_s)
    body = wav_bytes(x)
    step = a.duration_s / a.rounds
    print(f"clip {a.clip_s:g} s, max-batch {a.max_batch}, {concurrency} concurrent HTTP clients, {a.rounds} rounds of "
          f"{step:g} s per configuration, CPU provider, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    summary = []
    for preset in presets:
        raw = RawRunner(preset, x, a.threads)
        servers = {b: start_server(preset, b, concurrency, a.threads) for b in (a.max_batch, 1)}
        try:
            overhead, speedup = [], []
            for r in range(a.rounds):
                raw_b = raw.throughput(a.max_batch, step)
                srv_b, err_b, ccpu = measure(servers[a.max_batch], body, concurrency, a.warmup_s, step)
                srv_1, err_1, _ = measure(servers[1], body, concurrency, a.warmup_s, step)
                overhead.append(srv_b / raw_b)
                speedup.append(srv_b / srv_1)
                print(f"[{preset} round {r + 1}] raw AsrRunner batch {a.max_batch}: {raw_b:7.2f} clips/s | server "
                      f"--max-batch {a.max_batch}: {srv_b:7.2f} req/s, --max-batch 1: {srv_1:7.2f} req/s | "
                      f"errors {err_b + err_1} | client CPU {ccpu:.2f} cores")
        finally:
            for srv in servers.values():
                srv.stop()
        summary.append((preset, overhead, speedup))
    print()
    print(f"{'preset':8} {'server/raw, same batch: median [min-max]':>42} {'batching speed-up b{}/b1: median [min-max]'.format(a.max_batch):>44}")
    for preset, overhead, speedup in summary:
        print(f"{preset:8} {statistics.median(overhead):>26.3f} [{min(overhead):.3f}-{max(overhead):.3f}]"
              f" {statistics.median(speedup):>28.3f} [{min(speedup):.3f}-{max(speedup):.3f}]")
    if a.json:
        import json

        doc: dict = {preset: statistics.median(overhead) for preset, overhead, _ in summary}
        doc["details"] = {preset: {"overhead_median": statistics.median(o), "overhead_rounds": o,
                                   "batching_speedup_median": statistics.median(sp), "batching_speedup_rounds": sp}
                          for preset, o, sp in summary}
        doc["targets"] = {"tiny": 0.85, "small": 0.95}
        a.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
