"""``asrtk sweep`` as a library: drive the peak search with real bench runs and write the results.

The orchestrator of a sweep: starts the embedded reference server (once, or once per worker
count), runs one :func:`toolkit.runs.bench.run_bench` per step as the peak search
(:class:`toolkit.capacity.sweep.SweepSearch`, pure) asks, and writes ``results/sweep-<id>/`` with
``capacity.json``, ``report.html``, ``report.md`` and the step run directories under ``runs/``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from toolkit.capacity import capacityfile, render
from toolkit.capacity.sweep import Judgement, StepPlan, SweepPolicy, SweepSearch
from toolkit.units import public_url


@dataclass
class SweepConfig:
    scenario: Any  # toolkit.scenario.Scenario
    policy: SweepPolicy
    target: str | None = None  # None: embedded reference server
    workers: list[int] | None = None  # embedded only: restart the server with each worker count
    preset: str = "tiny"
    server_args: list[str] = field(default_factory=list)
    out_dir: Path = Path("results")
    warmup_s: float = 2.0
    processes: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    history: str | None = None  # run history URL; None: ASRTK_HISTORY_URL, else <out_dir>/history.sqlite


@dataclass(frozen=True)
class SweepEvent:
    kind: str  # "server" | "start" | "done" | "finished"
    workers: int | None
    plan: StepPlan | None = None
    judgement: Judgement | None = None
    best_rps: float | None = None
    message: str = ""


@dataclass
class SweepReport:
    sweep_dir: Path
    capacity: dict
    capacity_path: Path
    report_html: Path
    report_md: Path


def _sweep_dir(out: Path, scenario: str, now: datetime) -> Path:
    base = out / f"sweep-{now:%Y%m%d-%H%M%S}-{scenario}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    path.mkdir(parents=True)
    return path


def request_shape(scenario: Any) -> dict:
    """Largest upload the scenario sends (a WAV bound) and whether it streams."""
    leaves = [e.scenario for e in scenario.mix] if scenario.mix else [scenario]
    biggest = 0
    for leaf in leaves:
        a = leaf.audio
        biggest = max(biggest, int(math.ceil(a.max_s * a.sample_rate)) * a.channels * 2 + 44)
    return {"max_body_bytes": biggest, "streaming": any(leaf.protocol.kind == "stream" for leaf in leaves)}


def _hlog_cv2(run_dir: Path) -> float | None:
    """Squared coefficient of variation of all latencies in a run's ``latency.hlog``."""
    try:
        from hdrh.log import HistogramLogReader

        from toolkit.recorder import new_histogram

        total = new_histogram()
        reader = HistogramLogReader(str(run_dir / "latency.hlog"), new_histogram())
        while True:
            h = reader.get_next_interval_histogram()
            if h is None:
                break
            total.add(h)
        reader.close()
        if total.get_total_count() < 2:
            return None
        mean = total.get_mean_value()
        return float((total.get_stddev() / mean) ** 2) if mean > 0 else None
    except Exception:  # noqa: BLE001 - fall back to the percentile-based estimate
        return None


def _search(
    cfg: SweepConfig,
    url: str,
    runs_dir: Path,
    workers: int | None,
    on_event: Callable[[SweepEvent], None],
) -> tuple[SweepSearch, list[tuple[dict, Path]]]:
    from toolkit.runs.bench import BenchConfig, run_bench
    from toolkit.scenario import with_overrides

    search = SweepSearch(cfg.policy)
    runs: list[tuple[dict, Path]] = []
    while (plan := search.next_step()) is not None:
        on_event(SweepEvent("start", workers, plan, best_rps=search.estimate()))
        if cfg.policy.mode == "rate":
            scen = with_overrides(cfg.scenario, rate=plan.load, duration_s=plan.duration_s, warmup_s=cfg.warmup_s)
        else:
            scen = with_overrides(cfg.scenario, users=int(plan.load), duration_s=plan.duration_s,
                                  warmup_s=cfg.warmup_s)
        load_txt = f"{plan.load:.4g}".replace(".", "_")
        unit = "rps" if cfg.policy.mode == "rate" else "users"
        outcome = run_bench(BenchConfig(
            scenario=scen, target=url, out_dir=runs_dir, processes=cfg.processes, headers=cfg.headers,
            live=False, quiet=False, run_id=f"step-{plan.index:02d}-{load_txt}{unit}",
            label=f"sweep step {plan.index} ({plan.phase}, {plan.load:.4g} {unit})", record_history=False,
        ))
        result = capacityfile.step_result_from_summary(outcome.summary, plan.load, cfg.policy.mode)
        j = search.record(result)
        runs.append((outcome.summary, outcome.run_dir))
        on_event(SweepEvent("done", workers, plan, j, best_rps=search.estimate()))
    return search, runs


def _document(
    cfg: SweepConfig,
    search: SweepSearch,
    runs: list[tuple[dict, Path]],
    base_dir: Path,
    sweep_id: str,
    target: dict,
    created: str,
    wall_s: float,
) -> dict:
    from toolkit import __version__
    from toolkit.capacity.usl import fit_usl

    steps = []
    for rec, (summary, run_dir) in zip(search.records, runs):
        rel = str(run_dir.relative_to(base_dir)) if run_dir.is_relative_to(base_dir) else str(run_dir)
        steps.append(capacityfile.step_record(rec.plan, rec.result, rec.judgement, rec.final, summary,
                                              cfg.policy.mode, rel))
    outcome = search.outcome()
    n, x = capacityfile.usl_points(steps)
    usl, usl_error = None, None
    try:
        usl = fit_usl(n, x)
    except ValueError as exc:
        usl_error = str(exc)
    service = capacityfile.service_time_from_steps(steps)
    if service is not None:
        idx = service["step"]
        cv2 = _hlog_cv2(runs[idx][1])
        if cv2 is not None:
            service = capacityfile.service_time_from_steps(steps, cv2, f"latency.hlog of step {idx}")
    s = cfg.scenario
    return capacityfile.build_capacity(
        created=created, asrtk_version=__version__, sweep_id=sweep_id,
        scenario={"name": s.name, "source": s.source, "protocol": "mix" if s.mix else s.protocol.kind,
                  "route": None if s.mix else s.protocol.path},
        target=target, policy=cfg.policy, steps=steps, outcome=outcome, usl=usl, usl_error=usl_error,
        service_time=service, request=request_shape(s), wall_s=wall_s,
    )


def _write(doc: dict, d: Path) -> tuple[Path, Path, Path]:
    cap = capacityfile.write_capacity(d / "capacity.json", doc)
    html_path = d / "report.html"
    md_path = d / "report.md"
    html_path.write_text(render.capacity_html(doc))
    md_path.write_text(render.capacity_markdown(doc))
    return cap, html_path, md_path


def run_sweep(cfg: SweepConfig, on_event: Callable[[SweepEvent], None] | None = None) -> SweepReport:
    import locust  # noqa: F401  - gevent monkey-patching before anything else starts

    from reference_server.launcher import EmbeddedServer
    from toolkit.history import record_run

    emit = on_event or (lambda e: None)
    t0 = time.monotonic()
    now = datetime.now(timezone.utc)
    created = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    sweep_dir = _sweep_dir(Path(cfg.out_dir), cfg.scenario.name, now)
    sweep_id = sweep_dir.name.removeprefix("sweep-")

    if cfg.target is not None:
        search, runs = _search(cfg, cfg.target, sweep_dir / "runs", None, emit)
        target = {"url": public_url(cfg.target), "embedded": False, "server": None}
        doc = _document(cfg, search, runs, sweep_dir, sweep_id, target, created, time.monotonic() - t0)
        cap, h, m = _write(doc, sweep_dir)
        record_run(cfg.history, Path(cfg.out_dir), doc, sweep_dir, "sweep")
        emit(SweepEvent("finished", None, best_rps=doc["result"]["max_rps_at_slo"]))
        return SweepReport(sweep_dir, doc, cap, h, m)

    worker_counts = cfg.workers or [1]
    docs: dict[int, tuple[dict, Path]] = {}
    for w in worker_counts:
        sub = sweep_dir / f"workers-{w}" if cfg.workers else sweep_dir
        emit(SweepEvent("server", w, message=f"starting the reference server ({cfg.preset}, {w} worker(s))"))
        t_w = time.monotonic()
        with EmbeddedServer(preset=cfg.preset, workers=w, extra_args=cfg.server_args) as srv:
            search, runs = _search(cfg, srv.url, sub / "runs", w, emit)
            target = {"url": srv.url, "embedded": True, "server": {"preset": cfg.preset, "workers": w}}
        doc = _document(cfg, search, runs, sub, sweep_id if not cfg.workers else f"{sweep_id}/workers-{w}",
                        target, created, time.monotonic() - t_w)
        if cfg.workers:
            _write(doc, sub)
        docs[w] = (doc, sub)

    if not cfg.workers:
        doc = docs[worker_counts[0]][0]
    else:
        table = []
        for w, (d, sub) in docs.items():
            res = d["result"]
            at = res.get("at_best") or {}
            table.append({
                "workers": w, "max_rps_at_slo": res["max_rps_at_slo"], "ci_rps": res["ci_rps"],
                "p95_s": at.get("p95_s"), "error_rate": at.get("error_rate"), "status": res["status"],
                "capacity_file": str((sub / "capacity.json").relative_to(sweep_dir)),
            })
        feasible = [t for t in table if t["max_rps_at_slo"] is not None]
        best = max(feasible, key=lambda t: t["max_rps_at_slo"])["workers"] if feasible else None
        doc = dict(docs[best if best is not None else worker_counts[0]][0])
        doc["sweep_id"] = sweep_id
        doc["workers"] = table
        doc["best_workers"] = best
        # step run dirs are relative to the per-worker directory; make them relative to the sweep dir
        sub = docs[best if best is not None else worker_counts[0]][1]
        doc["steps"] = [{**s, "run_dir": str((sub / s["run_dir"]).relative_to(sweep_dir)) if s.get("run_dir")
                         else None} for s in doc["steps"]]
    doc["wall_s"] = time.monotonic() - t0
    cap, h, m = _write(doc, sweep_dir)
    record_run(cfg.history, Path(cfg.out_dir), doc, sweep_dir, "sweep")
    emit(SweepEvent("finished", None, best_rps=doc["result"]["max_rps_at_slo"]))
    return SweepReport(sweep_dir, doc, cap, h, m)
