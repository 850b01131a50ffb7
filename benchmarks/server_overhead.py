"""How much of raw ONNX Runtime throughput survives the reference server, and what batching buys.

Measured in ONE run, same machine, same model, same batch size, same ORT session options:

* overhead ratio = server throughput at saturation (many concurrent HTTP clients posting
  fixed-length WAV clips to /recognize) / raw in-process ``AsrRunner`` throughput
  (batches of ``--max-batch`` clips back to back, in a session with the server's options:
  intra-op spinning off). Targets: >= 0.85 on ``tiny``, >= 0.95 on ``small``. The ratio
  against a raw session *with* spinning (ORT's default, best for a process that does
  nothing else) is printed and written too.
* batching speed-up = server throughput with ``--max-batch N`` / with ``--max-batch 1``.

Shared and virtual machines change speed by tens of percent within seconds (this 2-core VM
flips between about 200 and 280 raw clips/s), so the measurements are short windows
interleaved with both servers up: raw, server --max-batch N, raw, server --max-batch 1, raw,
... Each server window is divided by the mean of the raw windows on either side of it, and
the median over windows is the figure; the range is printed beside it.

The load generator runs on the same machine (asyncio streams, the multipart request
built once), so on a small box part of the gap is still the client's own CPU: the client's
CPU is printed next to the ratio. The hypervisor's CPU steal over each preset's windows is read
from /proc/stat: above asrtk's disturbed threshold (0.05 of the cores, ASRTK_DISTURBED_SHARE)
the preset is printed as DISTURBED and listed in the JSON's ``disturbed``.

    python benchmarks/server_overhead.py                       # tiny and small, 4 s clips
    python benchmarks/server_overhead.py --preset small --clip-s 8 --duration-s 30 --json out.json
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

from toolkit.samplers import StealSpan  # noqa: E402
from toolkit.thresholds import from_env  # noqa: E402  - the run's disturbed threshold, as asrtk bench's


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
        # the server's session options (engine.load_engine), and ORT's default (spinning) for context
        self.runners = {spin: M.AsrRunner(M.create_session(bundle.paths["asr"], ["CPUExecutionProvider"], threads,
                                                           allow_spinning=spin), bundle.asr_vocab)
                        for spin in (False, True)}
        # the server decodes PCM16 WAV, so feed the runner the same quantised samples
        self.x = (np.round(x * 32767) / 32768).astype(np.float32)

    def throughput(self, batch: int, duration_s: float, spinning: bool = False) -> float:
        runner = self.runners[spinning]
        runner.run([self.x] * batch)  # warm-up of this shape
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < duration_s:
            runner.run([self.x] * batch)
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
    if not inside or not before:
        raise RuntimeError(f"no completion {'before' if inside else 'inside'} the measured window: the warm-up "
                           f"({warmup_s:.2f} s) or the window ({duration_s:.2f} s) is shorter than a batch period")
    t0 = before[-1]
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


def flanked(windows: list[tuple[str, float]], i: int, kind: str) -> float:
    """Mean of the nearest ``kind`` windows before and after window ``i`` (one side if only one exists)."""
    before = next((v for k, v in reversed(windows[:i]) if k == kind), None)
    after = next((v for k, v in windows[i + 1:] if k == kind), None)
    sides = [v for v in (before, after) if v is not None]
    return sum(sides) / len(sides)


def span(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", action="append", help="repeatable; default: tiny and small")
    p.add_argument("--clip-s", type=float, default=4.0)
    p.add_argument("--duration-s", type=float, default=20.0, help="measured time per configuration, split in windows")
    p.add_argument("--window-s", type=float, default=1.0, help="one measurement window (shorter than the host's "
                   "speed changes; a server window adds --warmup-s)")
    p.add_argument("--warmup-s", type=float, default=0.3, help="per server window: the batching pipeline fills")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=0, help="HTTP clients; default 2 x max-batch")
    p.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (raw and server alike)")
    p.add_argument("--json", type=Path, help="write the figures to this file: {preset: median overhead ratio, "
                   "'details': {preset: {overhead, against spinning raw, speed-up, per window}}, 'targets'}")
    a = p.parse_args(argv)
    presets = a.preset or ["tiny", "small"]
    concurrency = a.concurrency or 2 * a.max_batch
    x = clip(a.clip_s)
    body = wav_bytes(x)
    print(f"clip {a.clip_s:g} s, max-batch {a.max_batch}, {concurrency} concurrent HTTP clients, windows of at least "
          f"{a.window_s:g} s and 5 batch periods, CPU provider, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    summary = []
    for preset in presets:
        raw = RawRunner(preset, x, a.threads)
        servers = {b: start_server(preset, b, concurrency, a.threads) for b in (a.max_batch, 1)}
        windows: list[tuple[str, float]] = []
        errors, client_cpu = 0, []
        window_s = a.window_s
        steal_span = StealSpan()

        def raw_windows() -> None:
            windows.append(("raw", raw.throughput(a.max_batch, window_s)))
            windows.append(("spin", raw.throughput(a.max_batch, window_s / 2, spinning=True)))

        try:
            raw_windows()
            # a server window counts whole batch periods (responses come in bursts of max-batch): it
            # needs a completion before it starts and several periods inside
            period = a.max_batch / windows[0][1]
            window_s, warmup_s = max(a.window_s, 5 * period), max(a.warmup_s, 2.5 * period)
            rounds = max(3, round(a.duration_s / window_s))
            print(f"[{preset}] batch period {period * 1000:.0f} ms: {rounds} windows of {window_s:.2f} s per "
                  f"configuration (server windows after {warmup_s:.2f} s of warm-up)", flush=True)
            for r in range(rounds):
                for b in (a.max_batch, 1):
                    rps, err, ccpu = measure(servers[b], body, concurrency, warmup_s, window_s)
                    windows.append((f"b{b}", rps))
                    errors += err
                    client_cpu.append(ccpu)
                    raw_windows()
                if (r + 1) % max(1, rounds // 4) == 0 or r + 1 == rounds:
                    seen = [v for k, v in windows if k == "raw"]
                    print(f"[{preset}] {r + 1}/{rounds} windows: raw {min(seen):.0f}-{max(seen):.0f} clips/s, "
                          f"server b{a.max_batch} {statistics.median(v for k, v in windows if k == f'b{a.max_batch}'):.1f}"
                          f" req/s (median), errors {errors}", flush=True)
        finally:
            for srv in servers.values():
                srv.stop()
        steal = steal_span.cores()
        idx = [i for i, (k, _) in enumerate(windows) if k == f"b{a.max_batch}"]
        overhead = [windows[i][1] / flanked(windows, i, "raw") for i in idx]
        vs_spin = [windows[i][1] / flanked(windows, i, "spin") for i in idx]
        speedup = [windows[i][1] / flanked(windows, i, "b1") for i in idx]
        summary.append((preset, overhead, vs_spin, speedup, windows, errors, statistics.median(client_cpu), window_s,
                        steal))
    print()
    print(f"{'preset':8} {'server/raw, same batch':>28} {'server/raw with spinning':>28} "
          f"{'batching speed-up b{}/b1'.format(a.max_batch):>28} {'errors':>7} {'client CPU':>11}")
    limit = from_env().disturbed_cores(os.cpu_count() or 1)
    disturbed = {preset: bool(steal and steal > limit) for preset, *_, steal in summary}
    for preset, overhead, vs_spin, speedup, _, errors, ccpu, _, steal in summary:
        print(f"{preset:8} {span(overhead):>28} {span(vs_spin):>28} {span(speedup):>28} {errors:>7} {ccpu:>9.2f} c"
              + (f"  DISTURBED host: CPU steal {steal:.2f} cores (> {limit:g})" if disturbed[preset] else ""))
    print("(median [min-max] over windows; each server window against the raw windows on either side of it; the "
          "hypervisor's CPU steal is read from /proc/stat over each preset's windows)")
    if a.json:
        import json

        doc: dict = {preset: statistics.median(o) for preset, o, *_ in summary}
        doc["details"] = {preset: {
            "overhead_median": statistics.median(o), "overhead_windows": o,
            "overhead_vs_spinning_raw_median": statistics.median(vs), "overhead_vs_spinning_raw_windows": vs,
            "batching_speedup_median": statistics.median(sp), "batching_speedup_windows": sp,
            "errors": errors, "client_cpu_cores": ccpu, "window_s": win,
            "windows": [{"kind": k, "per_s": v} for k, v in windows],
            "steal_cpu_cores_mean": steal, "disturbed": disturbed[preset]}
            for preset, o, vs, sp, windows, errors, ccpu, win, steal in summary}
        doc["disturbed"] = sorted(preset for preset, bad in disturbed.items() if bad)
        doc["targets"] = {"tiny": 0.85, "small": 0.95}
        doc["context"] = {"cores": os.cpu_count(), "clip_s": a.clip_s, "max_batch": a.max_batch,
                          "concurrency": concurrency, "min_window_s": a.window_s, "duration_s": a.duration_s}
        a.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
