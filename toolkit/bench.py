"""``asrtk bench`` as a library: run one scenario against a target, write ``results/<run-id>/``.

Other commands (sweep, plan validate) call :func:`run_bench`. It imports Locust first
thing (gevent monkey-patching), so call it only from commands that generate load. It is
safe to call repeatedly in one process.
"""

from __future__ import annotations

import csv
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from toolkit.errors import TargetError, UsageError

LAG_THRESHOLD_S = 0.050  # schedule-lag p99 above this marks the run invalid
CPU_THRESHOLD_PERCENT = 90.0  # busiest load-generator process, mean over the measured window


@dataclass
class BenchConfig:
    scenario: Any  # toolkit.scenario.Scenario
    target: str | None = None  # None => embedded reference server (EmbeddedServer)
    server_args: list[str] = field(default_factory=list)
    out_dir: Path = Path("results")
    processes: int = 1
    scrape: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    live: bool = True
    quiet: bool = False
    run_id: str | None = None
    label: str | None = None
    expect_workers: int = 0  # remote `asrtk worker` processes to wait for
    master_bind: str = "127.0.0.1"
    master_port: int = 0
    timeout_s: float | None = None  # per request; default from the SLO


@dataclass
class BenchOutcome:
    run_dir: Path
    summary: dict


# ----------------------------------------------------------------------------- helpers


def split_target(url: str) -> tuple[str, str | None]:
    """``http://host:port/path`` -> (``http://host:port``, ``/path`` or None)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--target must be an http(s) URL like http://127.0.0.1:8000, got {url!r}")
    path = parts.path.rstrip("/")
    base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return base, (path or None)


def public_url(url: str) -> str:
    """The URL without user:password (never written to results)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def preflight(base_url: str, headers: dict[str, str], timeout_s: float = 5.0) -> int:
    """Any HTTP answer from the target proves it is reachable; returns the status of GET /."""
    import urllib.error
    import urllib.request

    for path in ("/ready", "/"):
        req = urllib.request.Request(base_url + path, headers=headers, method="GET")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - the user's target
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            if path == "/ready" and exc.code == 404:
                continue
            return int(exc.code)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TargetError(
                f"target {public_url(base_url)} is unreachable ({reason}); start it or fix --target"
            ) from None
    return 0


def _has_metrics(base_url: str, headers: dict[str, str]) -> bool:
    import urllib.request

    try:
        req = urllib.request.Request(base_url + "/metrics", headers=headers)
        with urllib.request.urlopen(req, timeout=3.0) as resp:  # noqa: S310
            head = resp.read(65536).decode("utf-8", errors="replace")
        return resp.status == 200 and ("# TYPE" in head or "# HELP" in head)
    except Exception:  # noqa: BLE001 - no /metrics is normal for other targets
        return False


def request_timeout_s(scenario: Any) -> float:
    return float(min(600.0, max(30.0, 10.0 * scenario.slo.latency_s)))


def prepare_request_sets(scenario: Any, headers: dict[str, str], progress: Any = None) -> tuple[list, list[float]]:
    """Prepared requests per leaf scenario and the mix weights."""
    from toolkit.corpus import build_corpus, build_texts
    from toolkit.engine.requests import build_requests

    sets, weights = [], []
    entries = [(e.weight, e.scenario) for e in scenario.mix] if scenario.mix else [(1.0, scenario)]
    for weight, leaf in entries:
        clips = build_corpus(leaf.audio, leaf.seed) if leaf.protocol.uses_audio else []
        texts = build_texts(leaf.text, leaf.seed, 64) if leaf.protocol.uses_text and leaf.text else []
        rs = build_requests(leaf.protocol, clips, texts, headers, leaf.name)
        if not rs.requests:
            raise UsageError(f"scenario {leaf.name!r}: nothing to send (no audio clips or texts)")
        sets.append(rs)
        weights.append(float(weight))
    return sets, weights


def _server_args(args: list[str]) -> tuple[str, int, list[str]]:
    preset, workers, rest, i = "tiny", 1, [], 0
    while i < len(args):
        if args[i] == "--model" and i + 1 < len(args):
            preset, i = args[i + 1], i + 2
        elif args[i] == "--workers" and i + 1 < len(args):
            workers, i = int(args[i + 1]), i + 2
        else:
            rest.append(args[i])
            i += 1
    return preset, workers, rest


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    os.replace(tmp, path)


def _pct(h: Any, p: float) -> float | None:
    from toolkit.recorder import percentiles_s

    return percentiles_s(h, [p * 100.0])[p * 100.0]


def slo_checks(scenario: Any, merged: Any, error_rate: float) -> dict[str, Any]:
    """SLO verdict from the merged totals (pure)."""
    slo = scenario.slo
    p = slo.percentile
    label = f"p{p * 100:g}"
    stream = scenario.protocol.kind == "stream" and not scenario.mix
    checks = []
    if not (stream and slo.final_latency_s is not None):
        lat = _pct(merged.hist["lat"], p)  # stream: the final result's latency after end of audio
        checks.append({"name": f"latency_{label}_s" if not stream else f"final_latency_{label}_s",
                       "threshold": slo.latency_s, "measured": lat,
                       "passed": lat is not None and lat <= slo.latency_s})
    if slo.rtf_max is not None:
        rtf = _pct(merged.hist["rtf"], p)
        checks.append({"name": f"rtf_{label}", "threshold": slo.rtf_max, "measured": rtf,
                       "passed": rtf is not None and rtf <= slo.rtf_max})
    if slo.partial_latency_s is not None:
        v = _pct(merged.hist["partial"], 0.95)
        checks.append({"name": "partial_latency_p95_s", "threshold": slo.partial_latency_s, "measured": v,
                       "passed": v is not None and v <= slo.partial_latency_s})
    if slo.final_latency_s is not None:
        v = _pct(merged.hist["final"], 0.95)
        checks.append({"name": "final_latency_p95_s", "threshold": slo.final_latency_s, "measured": v,
                       "passed": v is not None and v <= slo.final_latency_s})
    checks.append({"name": "error_rate", "threshold": slo.max_error_rate, "measured": error_rate,
                   "passed": merged.total > 0 and error_rate <= slo.max_error_rate})
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


# ----------------------------------------------------------------------------- run


class _Run:
    """State of one run; the pieces of :func:`run_bench` share it."""

    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.interrupted = False
        self.stop_time: float | None = None
        self.stoppers: list[Any] = []

    def on_sigint(self) -> None:
        if not self.stoppers:  # no load yet (workers still connecting): abort like a plain Ctrl-C
            raise KeyboardInterrupt
        if not self.interrupted:
            self.interrupted = True
            self.stop_time = time.perf_counter()
            for stop in self.stoppers:
                stop()


def run_bench(cfg: BenchConfig) -> BenchOutcome:
    """Run ``cfg.scenario`` and write the run directory. Raises TargetError before any load
    when the target is unreachable; Ctrl-C stops the load within ~2 s and still writes
    partial results (``complete: false``)."""
    import locust  # noqa: F401  - gevent monkey-patching, first thing

    from toolkit.scenario import with_overrides

    if cfg.processes < 1:
        raise UsageError(f"--processes must be >= 1, got {cfg.processes}")
    scenario = cfg.scenario
    server = None
    try:
        if cfg.target is None:
            from reference_server.launcher import EmbeddedServer

            preset, workers, extra = _server_args(cfg.server_args)
            server = EmbeddedServer(preset=preset, workers=workers, extra_args=extra)
            _say(cfg, f"starting the embedded reference server (model {preset}, {workers} worker(s)) ...")
            server.start()
            target = server.url
        else:
            target = cfg.target
        base_url, path = split_target(target)
        if path:
            scenario = with_overrides(scenario, target_path=path)
        preflight(base_url, cfg.headers)
        return _run_loaded(cfg, scenario, base_url, server)
    finally:
        if server is not None:
            server.stop()


def local_target_pids(base_url: str, server: Any = None) -> list[int]:
    """The processes serving a target on this host: the one listening on its port (an embedded
    server's own pid as a fallback). Remote targets: []."""
    from urllib.parse import urlsplit

    from toolkit.samplers import is_loopback_host, listening_pids

    parts = urlsplit(base_url)
    pids: set[int] = set()
    if parts.hostname and is_loopback_host(parts.hostname):
        port = parts.port or (443 if parts.scheme == "https" else 80)
        pids.update(listening_pids(port))
    if server is not None and getattr(server, "pid", 0):
        pids.add(int(server.pid))
    # a worker process under a listening supervisor is covered by the supervisor's tree
    return sorted(pids)


def _say(cfg: BenchConfig, msg: str) -> None:
    if cfg.live or cfg.quiet:
        print(msg, file=sys.stderr if not cfg.quiet else sys.stdout, flush=True)


def _run_loaded(cfg: BenchConfig, scenario: Any, base_url: str, server: Any) -> BenchOutcome:
    import gevent

    from toolkit.recorder import Aggregator, Recorder
    from toolkit.samplers import GpuSampler, HostSampler, PrometheusScraper, PsutilSource, Telemetry

    _say(cfg, f"preparing requests for scenario {scenario.name!r} ...")
    timeout_s = cfg.timeout_s or request_timeout_s(scenario)
    sets, weights = prepare_request_sets(scenario, cfg.headers)
    scrape_urls = list(cfg.scrape)
    if not scrape_urls and _has_metrics(base_url, cfg.headers):
        scrape_urls = [base_url + "/metrics"]

    def fetch(url: str) -> str:
        import urllib.request

        req = urllib.request.Request(url, headers=cfg.headers if url.startswith(base_url) else {})
        with urllib.request.urlopen(req, timeout=2.0) as resp:  # noqa: S310
            return resp.read().decode("utf-8", errors="replace")

    agg = Aggregator()
    run = _Run(cfg)
    source = PsutilSource(target_pids=local_target_pids(base_url, server))
    telemetry = Telemetry(HostSampler(source), GpuSampler(), [PrometheusScraper(u, fetch) for u in scrape_urls])
    horizon = scenario.warmup_s + scenario.duration_s
    drain_s = min(timeout_s, 30.0)

    from toolkit.engine.driver import DriverPlan

    plan = DriverPlan(load=scenario.load, warmup_s=scenario.warmup_s, duration_s=scenario.duration_s,
                      request_sets=sets, weights=weights, seed=scenario.seed, base_url=base_url,
                      timeout_s=timeout_s, drain_s=drain_s)
    created = datetime.now(timezone.utc)
    processes = cfg.processes + cfg.expect_workers if (cfg.processes > 1 or cfg.expect_workers) else 1

    live = None
    if cfg.live and not cfg.quiet:
        from toolkit.engine.live import LiveView

        live = LiveView(scenario, horizon, agg, telemetry)
    elif cfg.quiet:
        from toolkit.engine.live import QuietView

        live = QuietView(scenario, horizon, agg, telemetry)

    t_start = [time.perf_counter()]
    stop_flag = [False]

    def clock() -> float:
        return time.perf_counter() - t_start[0]

    def sampler_loop() -> None:
        next_t = 1.0
        while not stop_flag[0]:
            gevent.sleep(max(0.0, next_t - clock()))
            if stop_flag[0]:
                return
            telemetry.tick(clock())
            next_t += 1.0

    def ui_loop() -> None:
        while not stop_flag[0] and live is not None:
            live.update(clock())
            gevent.sleep(0.5 if not cfg.quiet else 5.0)

    prev_handler = signal.getsignal(signal.SIGINT)
    hub_handler = gevent.signal_handler(signal.SIGINT, run.on_sigint)
    extra_summary: dict[str, Any] = {}
    try:
        if live is not None:
            live.start()
        if processes == 1:
            from toolkit.engine.driver import Driver, new_environment

            rec = Recorder(scenario.warmup_s, scenario.duration_s)
            drv = Driver(plan, new_environment(), rec,
                         on_intervals=lambda ivs: agg.ingest("local", {"intervals": ivs}))
            run.stoppers.append(drv.stop)
            t_start[0] = time.perf_counter()
            g_s = gevent.spawn(sampler_loop)
            g_u = gevent.spawn(ui_loop)
            drv.run(t_start[0])
            agg.ingest("local", {"intervals": [], "totals": rec.snapshot()})
        else:
            from toolkit.engine.distributed import run_distributed

            g_s = g_u = None

            def started(t0: float, pids: list[int]) -> None:
                nonlocal g_s, g_u
                t_start[0] = t0
                for pid in pids:
                    source.add_process(pid)
                g_s = gevent.spawn(sampler_loop)
                g_u = gevent.spawn(ui_loop)

            extra_summary = run_distributed(
                scenario=scenario, plan=plan, headers=cfg.headers, local=cfg.processes,
                remote=cfg.expect_workers, bind=cfg.master_bind, port=cfg.master_port,
                aggregator=agg, on_started=started, stoppers=run.stoppers,
                host_sampler=telemetry.host, say=lambda m: _say(cfg, m))
        stop_at = (run.stop_time - t_start[0]) if run.stop_time is not None else clock()
    finally:
        stop_flag[0] = True
        for g in (locals().get("g_s"), locals().get("g_u")):
            if g is not None:
                g.kill()
        if live is not None:
            live.stop()
        hub_handler.cancel()
        signal.signal(signal.SIGINT, prev_handler if prev_handler is not None else signal.default_int_handler)

    return _write_results(cfg, scenario, base_url, server, agg, telemetry, created, run.interrupted,
                          stop_at, processes, extra_summary)


def _write_results(cfg: BenchConfig, scenario: Any, base_url: str, server: Any, agg: Any, telemetry: Any,
                   created: datetime, interrupted: bool, stop_at: float, processes: int,
                   extra: dict[str, Any]) -> BenchOutcome:
    from toolkit import __version__
    from toolkit.recorder import interval_row, summarize_s, write_hlog
    from toolkit.results import SCHEMA, TIMESERIES_COLUMNS, new_run_dir, telemetry_columns, write_json_atomic
    from toolkit.samplers import SERVER_METRICS_COLUMNS, gpu_summary, host_summary, loadgen_cpu, server_summary

    out = Path(cfg.out_dir)
    run_dir = out / cfg.run_id if cfg.run_id else new_run_dir(out, scenario.name, created)
    run_dir.mkdir(parents=True, exist_ok=True)
    warmup, end = scenario.warmup_s, scenario.warmup_s + scenario.duration_s
    measured_s = max(0.0, min(end, stop_at) - warmup) if interrupted else scenario.duration_s

    intervals = agg.merged_intervals()
    rows = [interval_row(iv, warmup) for iv in intervals]
    _write_csv(run_dir / "timeseries.csv", list(TIMESERIES_COLUMNS), rows)
    write_hlog(run_dir / "latency.hlog", intervals, warmup, created.timestamp())
    _write_csv(run_dir / "telemetry.csv", telemetry_columns(len(telemetry.gpu.names)), telemetry.rows)
    srows = [r for sc in telemetry.scrapers for r in sc.rows()]
    _write_csv(run_dir / "server_metrics.csv", SERVER_METRICS_COLUMNS, srows)

    m = agg.merged_totals()
    window = [r for r in telemetry.rows if warmup <= r["t_s"] <= end + 1.0] or telemetry.rows
    lg_mean, lg_max = loadgen_cpu(window)
    lag = summarize_s(m.hist["lag"])
    warnings: list[str] = list(extra.get("warnings", []))
    valid = True
    if lg_mean is not None and lg_mean > CPU_THRESHOLD_PERCENT:
        valid = False
        warnings.append(f"load generator saturated: its busiest process averaged {lg_mean:.0f}% of a core "
                        f"(> {CPU_THRESHOLD_PERCENT:.0f}%); rerun with more load-generator processes "
                        f"(--processes N) or on another machine")
    if lag["p99"] is not None and lag["p99"] > LAG_THRESHOLD_S:
        valid = False
        warnings.append(f"load generator fell behind its schedule: lag p99 {lag['p99'] * 1000:.1f} ms "
                        f"(> {LAG_THRESHOLD_S * 1000:.0f} ms), {m.late_starts} late starts; rerun with "
                        f"--processes N (one per core) or a lower --rate")
    host = host_summary(window, telemetry.cores)
    if host["disturbed"]:
        warnings.append(
            f"this host was busy with other work: {host['interference_cpu_cores_mean']:.2f} CPU cores on average "
            f"(other processes {host['other_cpu_cores_mean'] or 0:.2f}, CPU steal by the hypervisor "
            f"{host['steal_cpu_cores_mean'] or 0:.2f}; threshold {host['interference_threshold_cores']:g}); "
            "latency may be inflated and will not repeat: rerun on a quiet machine")
    if host["cpu_mean_percent"] is not None and host["cpu_mean_percent"] > 90:
        warnings.append(f"host CPU averaged {host['cpu_mean_percent']:.0f}%: the load generator and the target "
                        f"compete for it; use --target on another machine for figures you will sign")
    if interrupted:
        warnings.append("run interrupted (Ctrl-C): partial results")

    error_rate = (m.errors / m.total) if m.total else 0.0
    lat = summarize_s(m.hist["lat"])
    rtf = summarize_s(m.hist["rtf"]) if m.hist["rtf"].get_total_count() else None
    stream = None
    if m.hist["partial"].get_total_count() or m.hist["final"].get_total_count():
        def _s(h: Any) -> dict[str, Any]:
            d = summarize_s(h)
            return {k: d[k] for k in ("p50", "p95", "p99", "max", "count")}
        stream = {"partial_latency_s": _s(m.hist["partial"]), "final_latency_s": _s(m.hist["final"])}
    dur = measured_s if measured_s > 0 else None
    # Throughput counts completions inside the measured window (by completion second): an
    # overloaded target cannot look fast because its backlog finished after the window.
    win_end = warmup + measured_s
    done = [iv for iv in intervals if warmup <= iv["t"] < win_end]
    done_ok = sum(iv["ok"] for iv in done)
    done_audio = sum(iv["audio_s"] for iv in done)
    done_tx = sum(iv["bytes_sent"] for iv in done)
    done_rx = sum(iv["bytes_received"] for iv in done)
    tcores = host["target_cpu_cores_mean"]
    host["target_cpu_s_per_request"] = (tcores * dur / done_ok) if (tcores is not None and dur and done_ok) else None
    server_info = None
    if server is not None:
        server_info = {"preset": server.preset, "workers": server.workers, "provider": None}
    srv = server_summary(telemetry.scrapers, warmup, end)
    if srv is not None:
        cores = srv.get("cpu_cores_mean")
        srv["cpu_s_per_request"] = (cores * dur / done_ok) if (cores is not None and dur and done_ok) else None
    if server_info is not None and telemetry.scrapers and telemetry.scrapers[0].scrapes:
        for name, labels, _v in telemetry.scrapers[0].scrapes[-1][1]:
            if name == "asrtk_model_info" and labels.get("provider"):
                server_info["provider"] = labels["provider"]
                break
    load = scenario.load
    summary: dict[str, Any] = {
        "schema": SCHEMA,
        "run_id": run_dir.name,
        "asrtk_version": __version__,
        "created": created.isoformat().replace("+00:00", "Z"),
        "complete": not interrupted,
        "incomplete_reason": "interrupted" if interrupted else None,
        "label": cfg.label,
        "scenario": {"name": scenario.name, "source": scenario.source, "protocol": scenario.protocol.kind
                     if not scenario.mix else "mix", "seed": scenario.seed},
        "target": {"url": public_url(base_url), "embedded": server is not None, "server": server_info},
        "load": {"mode": load.mode,
                 "offered_rps": (m.scheduled / dur) if dur else None,
                 "achieved_rps": (done_ok / dur) if dur else None,
                 "users": max((s.users or 0) for s in load.stages) if load.mode == "closed" else None,
                 "processes": processes,
                 "arrival": load.arrival if load.mode == "open" else None,
                 "stages": [{"duration_s": s.duration_s, "rate": s.rate, "users": s.users, "ramp": s.ramp}
                            for s in load.stages]},
        "duration_s": measured_s,
        "warmup_s": warmup,
        "requests": {"total": m.total, "ok": m.ok, "errors": m.errors, "error_rate": error_rate,
                     "late_starts": m.late_starts, "by_class": dict(sorted(m.by_class.items()))},
        "throughput": {"rps": (done_ok / dur) if dur else None,
                       "audio_s_per_s": (done_audio / dur) if dur else None,
                       "bytes_sent_per_s": (done_tx / dur) if dur else None,
                       "bytes_received_per_s": (done_rx / dur) if dur else None},
        "latency_s": lat,
        "rtf": {k: rtf[k] for k in ("p50", "p95", "p99", "mean")} if rtf else None,
        "stream": stream,
        "slo": slo_checks(scenario, m, error_rate),
        "loadgen": {"valid": valid, "warnings": warnings, "processes": processes,
                    "cpu_mean_percent": lg_mean, "cpu_max_percent": lg_max,
                    "schedule_lag_p50_s": lag["p50"], "schedule_lag_p99_s": lag["p99"],
                    "schedule_lag_max_s": lag["max"]},
        "gpu": gpu_summary(telemetry.gpu, window),
        "host": host,
        "server": srv,
        "files": {"summary": "summary.json", "timeseries": "timeseries.csv", "latency_log": "latency.hlog",
                  "telemetry": "telemetry.csv", "server_metrics": "server_metrics.csv",
                  "report_html": "report.html", "report_md": "report.md"},
    }
    write_json_atomic(run_dir / "summary.json", summary)
    from toolkit.report import write_reports

    write_reports(run_dir)
    return BenchOutcome(run_dir=run_dir, summary=summary)
