"""The gate's error rates, measured on this machine with servers of a known latency distribution.

Three latency servers (``tests/integration/latency_server.py --lognormal-ms``) serve the same
lognormal service time (median 50 ms, sigma 0.3): ``old`` and ``same`` identically (different
seeds), ``slow`` 10% slower (every service time x1.1, so every percentile is +10%). Each
verdict is one real ``asrtk gate`` in interleaved A/B mode at default settings
(``--baseline-target``: old, then new, alternately, up to ``--max-runs`` pairs):

1. ``--pairs`` identical pairs (old vs same): how many false ``fail`` verdicts (target 0 of 20);
2. ``--pairs`` pairs with the slowdown (old vs slow): how many are detected as ``fail`` (>= 19 of 20);
3. ``--hog-pairs`` identical pairs with a single-core CPU hog started half-way through (after
   the first baseline run): no false ``fail`` (``inconclusive`` is acceptable, and counted).

It prints every verdict, the counts, and the load time each verdict took (target <= 90 s).
Run: ``python benchmarks/gate_power.py [--pairs 20] [--hog-pairs 5] [--rate 250]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import latency_server as ls  # noqa: E402

HOG = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end:\n    pass\n"
SCENARIO = """name: gate-power
protocol: {{kind: http, method: POST, path: /work, body: none}}
load: {{mode: open, rate: {rate}}}
duration_s: 20
warmup_s: 2
seed: 7
slo: {{latency_s: 1.0, percentile: 0.95}}
"""


def gate(scenario: Path, new: str, old: str, out: Path, hog_after_s: float | None) -> dict:
    """One `asrtk gate` A/B verdict; a hog process (bounded in time) started `hog_after_s` in."""
    verdict_file = out / f"verdict-{time.monotonic_ns()}.json"
    cmd = [sys.executable, "-m", "toolkit", "gate", "-s", str(scenario), "--target", new, "--baseline-target", old,
           "--out", str(out / "results"), "--json", str(verdict_file)]
    hog: list[subprocess.Popen] = []
    timer = None
    if hog_after_s is not None:
        timer = threading.Timer(hog_after_s, lambda: hog.append(
            subprocess.Popen([sys.executable, "-c", HOG.format(s=150)])))
        timer.start()
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
    finally:
        if timer is not None:
            timer.cancel()
        for p in hog:  # stop what we started, by PID
            p.terminate()
            p.wait(timeout=10)
    wall = time.monotonic() - t0
    if r.returncode not in (0, 3, 4) or not verdict_file.exists():
        raise SystemExit(f"asrtk gate failed (exit {r.returncode}): {r.stderr[-2000:]}")
    v = json.loads(verdict_file.read_text())
    runs = len(v["runs"]) + len(v["baselines"])
    check = next((c for c in v["checks"] if c["kind"] == "compare"), None)
    return {"verdict": v["verdict"], "exit": r.returncode, "wall_s": round(wall, 1), "runs": runs,
            "load_s": runs * 22.0, "change": check and check["change"], "ci": check and check["ci"],
            "reasons": v["reasons"], "hog": hog_after_s is not None}


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the servers this benchmark started are stopped (by PID)."""
    import signal

    def raise_interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)


def main() -> None:
    _stop_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--hog-pairs", type=int, default=5)
    ap.add_argument("--rate", type=float, default=250.0)
    ap.add_argument("--skip-identical", action="store_true", help="only the slowdown and hog pairs")
    ap.add_argument("--json", type=Path, default=None, help="also write the verdicts here")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="asrtk-gate-power-"))
    scenario = work / "gate-power.yaml"
    scenario.write_text(SCENARIO.format(rate=a.rate))
    servers = {}
    try:
        for name, scale, seed in (("old", 1.0, 1), ("same", 1.0, 2), ("slow", 1.1, 3)):
            servers[name] = ls.start("--lognormal-ms", "50", "--sigma", "0.3", "--scale", str(scale), "--seed", str(seed))
        url = {k: v[1] for k, v in servers.items()}
        out: list[dict] = []
        plan = ([("slowdown", "slow", None)] if a.skip_identical else
                [("identical", "same", None), ("slowdown", "slow", None)]) * a.pairs
        # half-way through the first pair: after its baseline run (2 s warm-up + 20 s + start-up)
        plan += [("identical+hog", "same", 24.0)] * a.hog_pairs
        for i, (kind, new, hog) in enumerate(plan):
            res = {"kind": kind, **gate(scenario, url[new], url["old"], work, hog)}
            out.append(res)
            chg = "-" if res["change"] is None else f"{res['change'] * 100:+.1f}%"
            ci = "" if not res["ci"] else f" CI {res['ci'][0] * 100:+.1f}%..{res['ci'][1] * 100:+.1f}%"
            print(f"{i + 1:3d}/{len(plan)} {kind:14s} {res['verdict']:12s} p95 {chg}{ci}  runs {res['runs']} "
                  f"load {res['load_s']:.0f}s wall {res['wall_s']:.0f}s"
                  + (f"  ({'; '.join(res['reasons'])[:120]})" if res["reasons"] else ""), flush=True)
    finally:
        for proc, _url in servers.values():
            ls.stop(proc)

    def count(kind: str, verdict: str) -> int:
        return sum(1 for r in out if r["kind"] == kind and r["verdict"] == verdict)

    n_id, n_slow, n_hog = (0 if a.skip_identical else a.pairs), a.pairs, a.hog_pairs
    print(f"\n== gate power (A/B at {a.rate:g} req/s, default settings: --max-regression 5%, 20 s + 2 s a run, "
          "--max-runs 2)")
    print(f"identical pairs:  false fail {count('identical', 'fail')}/{n_id}, pass {count('identical', 'pass')}, "
          f"inconclusive {count('identical', 'inconclusive')}")
    print(f"+10% slowdown:    detected (fail) {count('slowdown', 'fail')}/{n_slow}, "
          f"inconclusive {count('slowdown', 'inconclusive')}, pass {count('slowdown', 'pass')}")
    if n_hog:
        print(f"identical + hog:  false fail {count('identical+hog', 'fail')}/{n_hog}, "
              f"inconclusive {count('identical+hog', 'inconclusive')}, pass {count('identical+hog', 'pass')}")
    loads = [r["load_s"] for r in out]
    print(f"load per verdict: max {max(loads):.0f} s, mean {sum(loads) / len(loads):.0f} s "
          f"(wall mean {sum(r['wall_s'] for r in out) / len(out):.0f} s)")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
