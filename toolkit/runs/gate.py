"""``asrtk gate`` as a library: measure (or load) runs, judge them, write what CI reads.

Three modes:

* ``compare`` without load: ``current`` and ``baseline`` run directories are judged as they are.
* ``compare`` with load: the scenario is run against the target (the embedded reference server
  when none is given) and compared with a baseline run (a directory, a run id under ``out_dir``,
  or ``history:BRANCH``: the newest trusted run of the scenario on that branch). While the
  verdict is inconclusive the current side is measured again, up to ``max_runs`` runs.
* ``ab``: the old build (``baseline_target``) and the new one (``target``) are run alternately on
  this machine, baseline first, one pair at a time, up to ``max_runs`` pairs: a drift of a shared
  runner hits both sides alike.

Every bench run lands in ``out_dir`` like any other and in the run history; the gate itself
is recorded there too, with its verdict.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from toolkit.errors import NoDataError, UsageError
from toolkit.gate.expr import Figure, Threshold
from toolkit.gate.judge import RunData, judge, measure_more
from toolkit.gate.model import GateResult


@dataclass
class GateConfig:
    current: list[Path] = field(default_factory=list)  # judge these runs, no load
    baseline: list[str] = field(default_factory=list)  # RUN_DIR | RUN_ID | history:BRANCH
    scenario: str | None = None
    target: str | None = None
    baseline_target: str | None = None
    thresholds: list[Threshold] = field(default_factory=list)
    compare: list[Figure] | None = None
    max_regression: float = 0.05
    confidence: float = 0.95
    max_runs: int = 2
    policy: str = "inconclusive"
    duration_s: float = 20.0
    warmup_s: float = 2.0
    rate: float | None = None
    users: int | None = None
    seed: int | None = None
    out_dir: Path = Path("results")
    history: str | None = None
    label: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    model: str = "tiny"
    processes: int = 1
    quiet: bool = True


# ----------------------------------------------------------------------------- loading runs


def _per_second(run_dir: Path, warmup_s: float) -> tuple[list[float], list[float]]:
    """(target CPU seconds, successful requests) per measured second, aligned; empty when the run
    has no CPU figure for its target (neither local processes nor a CPU counter in /metrics)."""
    from toolkit.results import FILES, read_csv

    ts = read_csv(run_dir / FILES["timeseries"]) if (run_dir / FILES["timeseries"]).exists() else []
    ok_at = {int(r["t_s"]): float(r["ok"] or 0) for r in ts if r.get("phase") == "measure" and r.get("t_s") is not None}
    cpu_at: dict[int, float] = {}
    tel = run_dir / FILES["telemetry"]
    if tel.exists():
        for r in read_csv(tel):  # the row at t covers the second before it
            if r.get("target_cpu_cores") is not None and r.get("t_s") is not None:
                cpu_at[int(round(float(r["t_s"]))) - 1] = float(r["target_cpu_cores"])
    if not cpu_at and (run_dir / FILES["server_metrics"]).exists():
        totals: dict[float, float] = {}
        for r in read_csv(run_dir / FILES["server_metrics"]):
            if r.get("metric") == "asrtk_process_cpu_seconds_total":
                totals[float(r["t_s"])] = totals.get(float(r["t_s"]), 0.0) + float(r["value"])
        ts_sorted = sorted(totals)
        for a, b in zip(ts_sorted, ts_sorted[1:]):
            if b > a and totals[b] >= totals[a]:
                cpu_at[int(round(b)) - 1] = (totals[b] - totals[a]) / (b - a)
    secs = sorted(k for k in ok_at if k in cpu_at and k >= int(warmup_s))
    return [cpu_at[k] for k in secs], [ok_at[k] for k in secs]


def load_run(run_dir: Path, history: Any = None) -> RunData:
    from toolkit.results import FILES, read_latency_histogram, read_summary

    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    warmup = float(summary.get("warmup_s") or 0.0)
    cpu, ok = _per_second(run_dir, warmup)
    commit = branch = None
    if history is not None:
        for rec in history.runs(scenario=(summary.get("scenario") or {}).get("name"), kind="bench"):
            if rec.run_id == summary.get("run_id"):
                commit, branch = rec.git_commit, rec.git_branch
                break
    return RunData(summary=summary, path=str(run_dir), latency=read_latency_histogram(run_dir / FILES["latency_log"], warmup),
                   cpu_s=cpu, ok=ok, git_commit=commit, git_branch=branch)


def resolve_baseline(spec: str, out_dir: Path, scenario: str | None, history: Any) -> RunData:
    """A baseline spec -> its run (one line naming what is missing when it cannot).

    ``history:BRANCH`` is the newest trusted bench run of the scenario on that branch; its run
    directory is used when it is on this machine, else what the history keeps of it (summary and
    latency histogram: enough for percentiles; CPU per request then has no interval)."""
    if spec.startswith("history:"):
        branch = spec.split(":", 1)[1]
        if not branch:
            raise UsageError("--baseline history:BRANCH needs a branch, e.g. history:main")
        if scenario is None:
            raise UsageError("--baseline history:BRANCH needs --scenario (whose runs to look up)")
        if history is None:
            raise NoDataError("--baseline history:BRANCH: there is no run history yet "
                              "(run asrtk bench or asrtk gate on that branch first, or pass --history URL)")
        rec = history.latest(scenario, branch, kind="bench")
        if rec is None:
            raise NoDataError(f"no trusted run of scenario {scenario!r} on branch {branch!r} in the history "
                              f"({history.where}); run the gate on {branch} first, or pass --baseline RUN_DIR")
        path = Path(rec.path)
        if (path / "summary.json").exists():
            return load_run(path, history)
        if rec.summary_json and rec.latency_hdr:
            import json

            from toolkit.recorder import decode

            return RunData(summary=json.loads(rec.summary_json), path=f"history:{rec.run_id}",
                           latency=decode(rec.latency_hdr), git_commit=rec.git_commit, git_branch=rec.git_branch)
        raise NoDataError(f"the history's baseline run {rec.run_id} ({path}) is not on this machine and the "
                          "history holds no copy of its data; pass its run directory as --baseline RUN_DIR")
    p = Path(spec)
    if (p / "summary.json").exists():
        return load_run(p, history)
    if (Path(out_dir) / spec / "summary.json").exists():
        return load_run(Path(out_dir) / spec, history)
    raise NoDataError(f"--baseline {spec!r}: no run directory with a summary.json there or under {out_dir}/ "
                      "(give RUN_DIR, a RUN_ID under --out, or history:BRANCH)")


# ----------------------------------------------------------------------------- measuring


def _bench_once(cfg: GateConfig, target: str | None, label: str, say: Callable[[str], None]) -> Path:
    from toolkit.runs.bench import BenchConfig, run_bench
    from toolkit.scenario import load_scenario, with_overrides

    sc = with_overrides(load_scenario(cfg.scenario), rate=cfg.rate, users=cfg.users, seed=cfg.seed,
                        duration_s=cfg.duration_s, warmup_s=cfg.warmup_s)
    say(f"gate: {label} run of {sc.name!r} against {target or 'the embedded reference server'} "
        f"({cfg.warmup_s:g} s warm-up + {cfg.duration_s:g} s)")
    bc = BenchConfig(scenario=sc, target=target, server_args=["--model", cfg.model], out_dir=cfg.out_dir,
                     processes=cfg.processes, headers=cfg.headers, live=False, quiet=cfg.quiet,
                     label=f"gate:{label}" + (f" {cfg.label}" if cfg.label else ""))
    bc.history = cfg.history
    # an A/B run of the old build is not this commit's measurement: keep it out of the history,
    # where it would pass for a run of this branch
    bc.record_history = not label.startswith("baseline")
    return run_bench(bc).run_dir


def _ran(run_dir: Path, label: str) -> Path:
    """A measured run, or the run's failure (exit 1) when no request of it succeeded."""
    from toolkit.errors import AsrtkError
    from toolkit.results import failure_line, read_summary

    line = failure_line(read_summary(run_dir))
    if line is not None:
        raise AsrtkError(f"gate: the {label} run failed: {line} (see {run_dir})")
    return run_dir


def run_gate(cfg: GateConfig, say: Callable[[str], None] | None = None,
             bench: Callable[[GateConfig, str | None, str, Callable[[str], None]], Path] | None = None) -> GateResult:
    """Judge (and, with a scenario, measure) and return the verdict. ``bench`` is the seam that
    runs one load test and returns its run directory (default: :func:`toolkit.runs.bench.run_bench`)."""
    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    bench = bench or _bench_once
    if cfg.max_runs < 1:
        raise UsageError(f"--max-runs must be >= 1, got {cfg.max_runs}")
    load_mode = cfg.scenario is not None
    if cfg.current and load_mode:
        raise UsageError("--current judges existing runs; it cannot be combined with --scenario (which measures)")
    if not cfg.current and not load_mode:
        raise UsageError("give --scenario S (measure now) or --current RUN_DIR (judge an existing run)")
    if cfg.baseline_target and cfg.baseline:
        raise UsageError("--baseline-target measures the baseline now; it cannot be combined with --baseline")
    if cfg.baseline_target and not load_mode:
        raise UsageError("--baseline-target needs --scenario (the A/B runs measure it)")
    if not cfg.baseline and not cfg.baseline_target and not cfg.thresholds:
        raise UsageError("nothing to judge: give --baseline, --baseline-target or at least one --threshold")

    from toolkit.history import open_history

    history = None
    try:
        history = open_history(cfg.history, cfg.out_dir)
    except NoDataError:
        history = None
    t0 = time.monotonic()
    created = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    mode = "ab" if cfg.baseline_target else "compare" if (cfg.baseline or cfg.current) else "thresholds"
    scenario_name = None
    if cfg.scenario is not None:
        from toolkit.scenario import load_scenario

        scenario_name = load_scenario(cfg.scenario).name  # a bad scenario fails here, before any load
    base_runs = [resolve_baseline(b, cfg.out_dir, scenario_name, history) for b in cfg.baseline]

    loaded: dict[Path, RunData] = {}  # each run's files are read once, however often it is judged

    def run_of(path: Path) -> RunData:
        if Path(path) not in loaded:
            loaded[Path(path)] = load_run(path, history)
        return loaded[Path(path)]

    def verdict(cur: Sequence[Path], base: Sequence[RunData] | None) -> GateResult:
        return judge([run_of(p) for p in cur], list(base) if base is not None else None,
                     thresholds=cfg.thresholds, compare=cfg.compare, max_regression=cfg.max_regression,
                     confidence=cfg.confidence, mode=mode, policy=cfg.policy, created=created,
                     duration_s=round(time.monotonic() - t0, 1))

    if not load_mode:
        for p in cfg.current:
            _ran(Path(p), "current")
        result = verdict(cfg.current, base_runs if cfg.baseline else None)
    else:
        cur_dirs: list[Path] = []
        ab_base: list[RunData] = []
        result = None
        for i in range(cfg.max_runs):
            if cfg.baseline_target:
                label = f"baseline {i + 1}"
                ab_base.append(load_run(_ran(bench(cfg, cfg.baseline_target, label, say), label), history))
            cur_dirs.append(_ran(bench(cfg, cfg.target, f"current {i + 1}", say), f"current {i + 1}"))
            base = ab_base if cfg.baseline_target else (base_runs if cfg.baseline else None)
            result = verdict(cur_dirs, base)
            if not measure_more(result):
                break
            if i + 1 < cfg.max_runs:
                say(f"gate: inconclusive after {i + 1} run(s) a side ({_why(result)}); measuring again")
        assert result is not None
    if history is not None:
        _record(history, result, say)
        history.close()
    return result


def _why(result: GateResult) -> str:
    parts = [c.message for c in result.checks if c.verdict == "inconclusive"] + list(result.reasons)
    return "; ".join(parts[:2]) or "no verdict"


def _record(history: Any, result: GateResult, say: Callable[[str], None]) -> None:
    """The gate's verdict in the history, on the judged run's record (best effort)."""
    from toolkit.history import record_from_summary
    from toolkit.results import read_summary

    try:
        last = Path(result.runs[-1].path)
        history.record(record_from_summary(read_summary(last), last, "gate", gate_verdict=result.verdict))
    except Exception as exc:  # noqa: BLE001 - the verdict stands without its history entry
        say(f"warning: the gate verdict was not recorded in the history: {exc}")
