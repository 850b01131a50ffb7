"""``asrtk bench`` as a library: run one scenario against a target, write ``results/<run-id>/``.

The orchestrator of one load test: it starts the embedded reference server when no target is
given, probes the target, runs the load engine with the samplers beside it, and hands the
measurements to the results store (``toolkit.results``) and the report renderer.

Real runs import Locust first thing (gevent monkey-patching), so call :func:`run_bench` only
from commands that generate load; it is safe to call repeatedly in one process (sweeps do).
A unit test passes :class:`BenchSeams` (a fake transport and clock, fake probes and samplers)
and then nothing is patched and nothing touches the network.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from toolkit.engine import probe
from toolkit.engine.local_target import check_pids, discover
from toolkit.errors import UsageError
from toolkit.thresholds import Thresholds
from toolkit.units import public_url, split_target


@dataclass
class BenchConfig:
    scenario: Any  # toolkit.scenario.Scenario
    target: str | None = None  # None => embedded reference server (EmbeddedServer)
    server_args: list[str] = field(default_factory=list)
    out_dir: Path = Path("results")
    processes: int = 1
    scrape: list[str] = field(default_factory=list)
    target_pids: list[int] = field(default_factory=list)  # --target-pids: counted as the target, besides what is found
    headers: dict[str, str] = field(default_factory=dict)
    live: bool = True
    quiet: bool = False
    run_id: str | None = None
    label: str | None = None
    expect_workers: int = 0  # remote `asrtk worker` processes to wait for
    master_bind: str = "127.0.0.1"
    master_port: int = 0
    secret: str | None = None  # shared with remote workers; None: ASRTK_CLUSTER_SECRET (see engine.distributed)
    timeout_s: float | None = None  # per request; default from the SLO
    thresholds: Thresholds | None = None  # None: toolkit.thresholds.from_env()
    history: str | None = None  # run history URL; None: ASRTK_HISTORY_URL, else <out_dir>/history.sqlite
    record_history: bool = True  # False for a sweep's steps: the sweep is recorded as a whole


@dataclass
class BenchSeams:
    """What a test replaces. Defaults are the real parts.

    ``transport(plan)`` builds the driver's transport (None: Locust's HTTP client, which
    makes the run import Locust first); ``clock`` is the driver's clock (None: real time);
    ``telemetry(base_url, server, scrape_urls)`` builds the samplers (None: psutil, NVML,
    /metrics); ``local_target(base_url, server, extra_pids)`` finds the target's processes on
    this host (:func:`toolkit.engine.local_target.discover`), ``check_pids`` vets --target-pids.
    """

    transport: Callable[[Any], Any] | None = None
    clock: Any = None
    preflight: Callable[[str, dict[str, str]], int] = probe.preflight
    has_metrics: Callable[[str, dict[str, str]], bool] = probe.has_metrics
    telemetry: Callable[[str, Any, list[str]], Any] | None = None
    local_target: Callable[[str, Any, list[int]], Any] = discover
    check_pids: Callable[[list[int]], None] = check_pids
    now: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))

    @property
    def real_http(self) -> bool:
        return self.transport is None


@dataclass
class BenchOutcome:
    run_dir: Path
    summary: dict


def request_timeout_s(scenario: Any) -> float:
    """Per-request timeout: 10x the SLO latency, within [30 s, 600 s]."""
    return float(min(600.0, max(30.0, 10.0 * scenario.slo.latency_s)))


def embedded_server_args(args: list[str]) -> tuple[str, int, list[str]]:
    """``--model``/``--workers`` out of the embedded server's arguments (preset, workers, the rest)."""
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


class _Run:
    """State of one run; the pieces of :func:`run_bench` share it."""

    def __init__(self, cfg: BenchConfig, now: Callable[[], float] = time.perf_counter) -> None:
        self.cfg = cfg
        self.now = now
        self.interrupted = False
        self.stop_time: float | None = None
        self.stoppers: list[Any] = []

    def on_sigint(self) -> None:
        if not self.stoppers:  # no load yet (workers still connecting): abort like a plain Ctrl-C
            raise KeyboardInterrupt
        if not self.interrupted:
            self.interrupted = True
            self.stop_time = self.now()
            for stop in self.stoppers:
                stop()


def run_bench(cfg: BenchConfig, seams: BenchSeams | None = None) -> BenchOutcome:
    """Run ``cfg.scenario`` and write the run directory. Raises TargetError before any load
    when the target is unreachable; Ctrl-C stops the load within ~2 s and still writes
    partial results (``complete: false``)."""
    seams = seams or BenchSeams()
    if seams.real_http:
        import locust  # noqa: F401  - gevent monkey-patching, first thing

    from toolkit.scenario import with_overrides

    if cfg.processes < 1:
        raise UsageError(f"--processes must be >= 1, got {cfg.processes}")
    if cfg.processes > 1 and not seams.real_http:
        raise UsageError("a fake transport runs in this process only (processes=1)")
    if cfg.processes > 1 or cfg.expect_workers:
        from toolkit.engine.distributed import cluster_secret, require_secret_for

        cfg.secret = cluster_secret(cfg.secret)
        require_secret_for(cfg.master_bind, cfg.expect_workers, cfg.secret)  # before anything starts
    if cfg.target_pids:
        seams.check_pids(list(cfg.target_pids))  # before anything starts
    scenario = cfg.scenario
    server = None
    try:
        if cfg.target is None:
            from reference_server.launcher import EmbeddedServer

            preset, workers, extra = embedded_server_args(cfg.server_args)
            server = EmbeddedServer(preset=preset, workers=workers, extra_args=extra)
            _say(cfg, f"starting the embedded reference server (model {preset}, {workers} worker(s)) ...")
            server.start()
            target = server.url
        else:
            target = cfg.target
        base_url, path = split_target(target)
        if path:
            scenario = with_overrides(scenario, target_path=path)
        seams.preflight(base_url, cfg.headers)
        return _run_loaded(cfg, seams, scenario, base_url, server)
    finally:
        if server is not None:
            server.stop()


def _say(cfg: BenchConfig, msg: str) -> None:
    if cfg.live or cfg.quiet:
        print(msg, file=sys.stderr if not cfg.quiet else sys.stdout, flush=True)


def _telemetry(cfg: BenchConfig, base_url: str, target_pids: list[int], scrape_urls: list[str]) -> Any:
    from toolkit.samplers import GpuSampler, HostSampler, PrometheusScraper, PsutilSource, Telemetry

    source = PsutilSource(target_pids=target_pids)
    fetch = probe.fetcher(base_url, cfg.headers)
    return Telemetry(HostSampler(source), GpuSampler(), [PrometheusScraper(u, fetch) for u in scrape_urls])


def scrape_plan(scrape: list[str], local: Any, base_url: str, headers: dict[str, str],
                has_metrics: Callable[[str, dict[str, str]], bool]) -> tuple[list[str], str | None]:
    """The /metrics URLs to scrape and where they came from: ``--scrape`` as given; else, for a
    local nginx, every loopback server it proxies to that serves /metrics (scraped one by one:
    through the balancer each scrape would see one server picked at random, and the counters of
    several would be mixed); else the target's own /metrics when it serves one.
    The target's headers go to the target only, never to its upstreams."""
    if scrape:
        return list(scrape), "--scrape"
    if local.upstreams:
        urls = [u for u in local.upstream_metrics_urls() if has_metrics(u.removesuffix("/metrics"), {})]
        if urls:
            return urls, f"nginx upstreams from {local.nginx_conf}"
    if has_metrics(base_url, headers):
        return [base_url + "/metrics"], "the target"
    return [], None


def _say_local(cfg: BenchConfig, local: Any, scrape_urls: list[str], scraped_from: str | None) -> None:
    from toolkit.report import local_target_line

    line = local_target_line(local.as_summary())
    if line:
        _say(cfg, f"target on this host: {line}")
    for note in local.notes:
        _say(cfg, f"note: {note}")
    if scrape_urls:
        _say(cfg, f"scraping {', '.join(public_url(u) for u in scrape_urls)} ({scraped_from})")


def _run_loaded(cfg: BenchConfig, seams: BenchSeams, scenario: Any, base_url: str, server: Any) -> BenchOutcome:
    import gevent

    from toolkit.engine.driver import DriverPlan
    from toolkit.engine.requests import prepare_request_sets
    from toolkit.recorder import Aggregator, Recorder

    _say(cfg, f"preparing requests for scenario {scenario.name!r} ...")
    timeout_s = cfg.timeout_s or request_timeout_s(scenario)
    sets, weights = prepare_request_sets(scenario, cfg.headers)
    local = seams.local_target(base_url, server, list(cfg.target_pids))
    scrape_urls, scraped_from = scrape_plan(cfg.scrape, local, base_url, cfg.headers, seams.has_metrics)
    _say_local(cfg, local, scrape_urls, scraped_from)

    agg = Aggregator()
    telemetry = (seams.telemetry or (lambda b, s, u: _telemetry(cfg, b, local.pids, u)))(base_url, server, scrape_urls)
    horizon = scenario.warmup_s + scenario.duration_s
    drain_s = min(timeout_s, 30.0)
    plan = DriverPlan(load=scenario.load, warmup_s=scenario.warmup_s, duration_s=scenario.duration_s,
                      request_sets=sets, weights=weights, seed=scenario.seed, base_url=base_url,
                      timeout_s=timeout_s, drain_s=drain_s)
    created = seams.now()
    processes = cfg.processes + cfg.expect_workers if (cfg.processes > 1 or cfg.expect_workers) else 1

    live = None
    if cfg.live and not cfg.quiet:
        from toolkit.engine.live import LiveView

        live = LiveView(scenario, horizon, agg, telemetry)
    elif cfg.quiet:
        from toolkit.engine.live import QuietView

        live = QuietView(scenario, horizon, agg, telemetry)

    clk = seams.clock
    now = clk.now if clk is not None else time.perf_counter
    nap = clk.sleep if clk is not None else gevent.sleep
    t_start = [now()]
    stop_flag = [False]
    run = _Run(cfg, now)

    def clock() -> float:
        return now() - t_start[0]

    def sampler_loop() -> None:
        next_t = 1.0
        while not stop_flag[0]:
            nap(max(0.0, next_t - clock()))
            if stop_flag[0]:
                return
            telemetry.tick(clock())
            next_t += 1.0

    def ui_loop() -> None:
        while not stop_flag[0] and live is not None:
            live.update(clock())
            nap(0.5 if not cfg.quiet else 5.0)

    prev_handler = signal.getsignal(signal.SIGINT)
    hub_handler = gevent.signal_handler(signal.SIGINT, run.on_sigint)
    extra_summary: dict[str, Any] = {}
    greenlets: list[Any] = []
    try:
        if live is not None:
            live.start()
        if processes == 1:
            from toolkit.engine.driver import Driver, new_environment

            rec = Recorder(scenario.warmup_s, scenario.duration_s)
            kwargs: dict[str, Any] = {}
            if seams.transport is not None:
                kwargs["transport"] = seams.transport(plan)
            if clk is not None:
                kwargs["clock"] = clk
            drv = Driver(plan, new_environment() if seams.real_http else None, rec,
                         on_intervals=lambda ivs: agg.ingest("local", {"intervals": ivs}), **kwargs)
            run.stoppers.append(drv.stop)
            t_start[0] = now()
            greenlets += [gevent.spawn(sampler_loop), gevent.spawn(ui_loop)]
            drv.run(t_start[0])
            agg.ingest("local", {"intervals": [], "totals": rec.snapshot()})
        else:
            from toolkit.engine.distributed import run_distributed

            def started(t0: float, pids: list[int]) -> None:
                t_start[0] = t0
                for pid in pids:
                    telemetry.host.source.add_process(pid)
                greenlets.extend([gevent.spawn(sampler_loop), gevent.spawn(ui_loop)])

            extra_summary = run_distributed(
                scenario=scenario, plan=plan, headers=cfg.headers, local=cfg.processes,
                remote=cfg.expect_workers, bind=cfg.master_bind, port=cfg.master_port,
                aggregator=agg, on_started=started, stoppers=run.stoppers,
                host_sampler=telemetry.host, say=lambda m: _say(cfg, m), secret=cfg.secret)
        stop_at = (run.stop_time - t_start[0]) if run.stop_time is not None else clock()
    finally:
        stop_flag[0] = True
        for g in greenlets:
            g.kill()
        if live is not None:
            live.stop()
        hub_handler.cancel()
        signal.signal(signal.SIGINT, prev_handler if prev_handler is not None else signal.default_int_handler)

    # streams are left out of the expected hit ratio: a WebSocket session carries no X-Cache
    popularity = [{**rs.popularity(), "share": w / sum(weights)} for rs, w in zip(sets, weights)
                  if rs.kind != "stream"]
    return _write_results(cfg, scenario, base_url, server, agg, telemetry, created, run.interrupted,
                          stop_at, processes, extra_summary, popularity, local, scraped_from)


def _server_info(server: Any, telemetry: Any) -> dict[str, Any] | None:
    """Embedded server: preset, workers and the execution provider its /metrics says ran."""
    if server is None:
        return None
    info: dict[str, Any] = {"preset": server.preset, "workers": server.workers, "provider": None}
    if telemetry.scrapers and telemetry.scrapers[0].scrapes:
        for name, labels, _v in telemetry.scrapers[0].scrapes[-1][1]:
            if name == "asrtk_model_info" and labels.get("provider"):
                info["provider"] = labels["provider"]
                break
    return info


def _write_results(cfg: BenchConfig, scenario: Any, base_url: str, server: Any, agg: Any, telemetry: Any,
                   created: datetime, interrupted: bool, stop_at: float, processes: int,
                   extra: dict[str, Any], popularity: list[dict[str, Any]], local: Any,
                   scraped_from: str | None) -> BenchOutcome:
    from toolkit import __version__, results
    from toolkit.recorder import interval_row, write_hlog
    from toolkit.report import write_reports
    from toolkit.samplers import cache_server_summary, gpu_summary, host_summary, loadgen_cpu, server_summary
    from toolkit.thresholds import from_env

    thresholds = cfg.thresholds or from_env()
    out = Path(cfg.out_dir)
    run_dir = out / cfg.run_id if cfg.run_id else results.new_run_dir(out, scenario.name, created)
    run_dir.mkdir(parents=True, exist_ok=True)
    warmup, end = scenario.warmup_s, scenario.warmup_s + scenario.duration_s
    measured_s = max(0.0, min(end, stop_at) - warmup) if interrupted else scenario.duration_s

    intervals = agg.merged_intervals()
    results.write_run_files(
        run_dir, timeseries=[interval_row(iv, warmup) for iv in intervals], telemetry=telemetry.rows,
        gpu_count=len(telemetry.gpu.names), server_metrics=[r for sc in telemetry.scrapers for r in sc.rows()])
    write_hlog(run_dir / results.FILES["latency_log"], intervals, warmup, created.timestamp())

    window = [r for r in telemetry.rows if warmup <= r["t_s"] <= end + 1.0] or telemetry.rows
    server_figures = server_summary(telemetry.scrapers, warmup, end)
    if server_figures is not None:
        server_figures["scraped_from"] = scraped_from
    summary = results.build_summary(
        run_id=run_dir.name, asrtk_version=__version__, created=created, interrupted=interrupted,
        label=cfg.label, scenario=scenario, target_url=public_url(base_url),
        server_info=_server_info(server, telemetry), processes=processes, measured_s=measured_s,
        totals=agg.merged_totals(), intervals=intervals, loadgen_cpu=loadgen_cpu(window),
        host=host_summary(window, telemetry.cores, thresholds.disturbed_cores(telemetry.cores)),
        gpu=gpu_summary(telemetry.gpu, window), server=server_figures,
        local_target=local.as_summary() if local.processes or local.notes else None,
        thresholds=thresholds, extra_warnings=extra.get("warnings", []),
        cache_server=cache_server_summary(telemetry.scrapers, warmup, end), popularity=popularity,
    )
    results.write_json_atomic(run_dir / results.FILES["summary"], summary)
    write_reports(run_dir)
    if cfg.record_history:
        from toolkit.history import record_run

        record_run(cfg.history, out, summary, run_dir, "bench")  # a failure is one warning line
    return BenchOutcome(run_dir=run_dir, summary=summary)
