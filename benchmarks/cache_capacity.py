"""Does `asrtk plan --hit-rate` predict what a cached node carries? One run, three measurements:

1. sweep the scenario (default ``emotion``) against a server without a cache: the capacity at
   0% hit rate, C0 (without a cache: the built-in corpus repeats its clips, so a cached server
   would already see hits);
2. bench the scenario with a Zipf popularity against a fresh cached server at half of C0: its
   hit ratio and CPU per request give the cost of a hit (``plan --hit-cost-from``);
3. plan at that hit ratio (C0 x 1/((1-h) + h x hit cost)), then sweep the Zipf scenario against
   a fresh cached server: the capacity it really has at that hit ratio.

(The tiny preset's TTS model is too cheap for this: ~1,000 req/s on 2 cores, so a hit saves
little; emotion and ASR hits skip a real share of the work.)

Printed: C0, the hit ratio and hit cost, the predicted and measured capacity and their ratio
(the issue's target: within +-15%). Loopback only; each sweep is bounded by --max-steps.

    python benchmarks/cache_capacity.py                 # ~10 minutes on 2 cores
    python benchmarks/cache_capacity.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def asrtk(*args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "toolkit", *args], capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if r.returncode not in (0, 3):
        raise SystemExit(f"asrtk {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r


def latest(out: Path, prefix: str) -> Path:
    runs = sorted(p for p in out.iterdir() if p.is_dir() and p.name.startswith(prefix))
    if not runs:
        raise SystemExit(f"no {prefix}* directory in {out}")
    return runs[-1]


def main() -> int:
    from reference_server.launcher import EmbeddedServer
    from toolkit.resources import data_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="emotion", help="built-in scenario name")
    ap.add_argument("--s", type=float, default=1.1, help="Zipf exponent")
    ap.add_argument("--catalog", type=int, default=300, help="distinct texts")
    ap.add_argument("--slo", default=None, help="default: the scenario's")
    ap.add_argument("--step-duration", default="15s")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="asrtk-cache-capacity-"))
    base = yaml.safe_load((data_dir("scenarios") / f"{args.scenario}.yaml").read_text())
    zipf = dict(base, name=f"{args.scenario}-zipf", repeat={"distribution": "zipf", "s": args.s, "catalog": args.catalog})
    zipf_path = work / f"{args.scenario}-zipf.yaml"
    zipf_path.write_text(yaml.safe_dump(zipf))
    server_args = ["--cache", "memory:512MiB", "--threads", "1"]
    sweep_args = [*(["--slo", args.slo] if args.slo else []), "--step-duration", args.step_duration,
                  "--max-steps", "12", "--quiet"]

    with EmbeddedServer("tiny", extra_args=["--threads", "1"], ready_timeout_s=300) as srv:
        asrtk("sweep", "-s", args.scenario, "--target", srv.url, "--out", str(work / "cold"), *sweep_args)
    cold = json.loads((latest(work / "cold", "sweep") / "capacity.json").read_text())["result"]
    c0 = cold["max_rps_at_slo"]
    if "at least" in (cold.get("note") or ""):
        raise SystemExit(f"the cold sweep never reached the SLO edge: {cold['note']}")
    print(f"capacity at 0% hit rate (all misses): {c0:.3g} rps", flush=True)

    with EmbeddedServer("tiny", extra_args=server_args, ready_timeout_s=300) as srv:
        asrtk("bench", "-s", str(zipf_path), "--target", srv.url, "--rate", f"{max(1.0, 0.5 * c0):.3g}",
              "--duration", "40", "--warmup", "5", "--out", str(work / "hits"), "--no-fail-on-slo")
    run = latest(work / "hits", "")
    s = json.loads((run / "summary.json").read_text())
    h = s["cache"]["server"]["hit_ratio"]
    print(f"bench at {0.5 * c0:.3g} rps: hit ratio {h:.3f} (client {s['cache']['client']['hit_ratio']:.3f}, "
          f"expected {s['cache']['expected']['hit_ratio']:.3f}), CPU {s['server']['cpu_s_per_request'] * 1000:.3g} ms/request",
          flush=True)

    plan_dir = work / "plan"
    asrtk("plan", "--target-qps", f"{c0:.6g}", "--capacity", str(latest(work / "cold", "sweep") / "capacity.json"),
          "--hit-rate", f"{h:.4f}", "--hit-cost-from", str(run), "--headroom", "1", "--redundancy", "0",
          "--out", str(plan_dir))
    plan = yaml.safe_load((plan_dir / "plan.yaml").read_text())
    cache = plan["expected"]["cache"]
    predicted = c0 * cache["capacity_factor"]
    print(f"plan: a hit costs {cache['hit_cost_ratio']:.3g} of a miss ({cache['hit_cost_source']}); "
          f"predicted capacity at {h:.0%} hits: {predicted:.3g} rps", flush=True)

    with EmbeddedServer("tiny", extra_args=server_args, ready_timeout_s=300) as srv:
        asrtk("sweep", "-s", str(zipf_path), "--target", srv.url, "--out", str(work / "warm"), *sweep_args)
    warm = json.loads((latest(work / "warm", "sweep") / "capacity.json").read_text())["result"]
    measured = warm["max_rps_at_slo"]
    print(f"warm sweep: {warm.get('note')}", flush=True)
    ratio = predicted / measured if measured else float("nan")
    ok = abs(ratio - 1) <= 0.15
    print(f"measured capacity at that hit rate: {measured:.3g} rps; predicted / measured = {ratio:.3f} "
          f"({'within' if ok else 'OUTSIDE'} +-15%)")
    if args.json:
        args.json.write_text(json.dumps({"c0_rps": c0, "hit_ratio": h, "hit_cost_ratio": cache["hit_cost_ratio"],
                                         "predicted_rps": predicted, "measured_rps": measured, "ratio": ratio}, indent=2))
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
