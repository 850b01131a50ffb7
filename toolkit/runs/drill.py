"""``asrtk drill`` as a library: inject failures into a fleet under open-loop load, judge its promises.

With no target, an embedded fleet (``toolkit.runs.fleet``: the real nginx with the config
``asrtk generate nginx`` writes, in front of N reference servers, one a backup) is started on
loopback, its capacity measured (a short closed-loop run through nginx), nginx configured
from that measurement, and the scenario driven open loop through it while each drill injects
its failure mid-run: ``kill`` (SIGKILL a primary), ``restart`` (rolling SIGTERM restart),
``hang`` (SIGSTOP a primary, then SIGCONT), ``overload`` (2x capacity), ``failover`` (every
primary killed). Against ``--target URL`` the user's hooks inject them instead.

The load is the bench's engine (``toolkit.engine.driver``: intended-start latency, exact
records); this module adds a recorder that keeps every request, nginx's access log (every
upstream tried, per request), the replicas' memory at 1 Hz, and the injections' timeline;
:mod:`toolkit.drills.judge` turns them into verdicts. Real runs import Locust first thing
(gevent monkey-patching): call :func:`run_drill` only from the command that runs it.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from toolkit.drills.model import DRILLS, DrillResult, DrillRun, Event, ServerFacts, Slo
from toolkit.errors import TargetError, UsageError

# Base load: the scenario's arrival process scaled so that its peak keeps the fleet minus one primary
# at this utilisation (kill, hang and restart take one out; a survivor near saturation would queue).
SURVIVOR_UTILISATION = 0.6
CALIBRATION_S = 6.0  # closed loop through nginx; the first second is left out
CALIBRATION_USERS_PER_PRIMARY = 4
QUEUE_SHARE_OF_SLO = 0.25  # --max-queue: a full queue waits at most this share of the SLO, even when the
# replicas serve slower under overload than when calibrated (a co-located load generator takes CPU)
FLEET_MEMORY_BUDGET_MB = 256.0
PICKUP_MARGIN_S = 3.0  # waiting for nginx to route to a returned replica: fail_timeout + this
# --inject hooks each drill needs against --target (failover may add "failback": bring the primaries back)
HOOKS = {"kill": ("kill",), "restart": ("restart",), "hang": ("hang", "resume"), "failover": ("failover",)}


@dataclass
class DrillConfig:
    scenario: Any  # toolkit.scenario.Scenario
    drills: list[str] = field(default_factory=lambda: list(DRILLS))
    target: str | None = None  # None: the embedded fleet
    hooks: dict[str, str] = field(default_factory=dict)  # --inject NAME=CMD (target mode)
    nginx_conf: Path | None = None  # target mode: the balancer's config, for the bounds
    rate: float | None = None  # base load, mean req/s; None: sized from the capacity
    capacity_rps: float | None = None  # None: measured (embedded); target mode: needed for overload
    replicas: int = 3
    backups: int = 1
    model: str = "tiny"
    server_args: list[str] = field(default_factory=list)  # appended to the replicas' flags (they win)
    max_fails: int | None = None  # embedded nginx: None = the generator's default
    fail_timeout_s: int | None = None
    retry_non_idempotent: bool | None = None  # None = the generator's default
    settle_s: float = 4.0  # load before each injection
    down_s: float = 5.0  # kill / failover: how long the victims stay down
    hang_s: float | None = None  # None: proxy_read_timeout + 3 s
    overload_s: float = 20.0
    overload_factor: float = 2.0
    post_s: float = 3.0  # load after the drill's last action
    observe_s: float | None = None  # target mode: load after a hook; None: fail_timeout + 5 s (15 s unknown)
    hook_timeout_s: float = 600.0
    out_dir: Path = Path("results")
    headers: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    seed: int | None = None


@dataclass
class DrillOutcome:
    run_dir: Path
    results: list[DrillResult]
    summary: dict
    interrupted: bool = False


def _say(cfg: DrillConfig, msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_config(cfg: DrillConfig) -> None:
    """Refuse what cannot run, before anything starts (UsageError names the fix)."""
    unknown = [d for d in cfg.drills if d not in DRILLS]
    if unknown:
        raise UsageError(f"--drills: unknown drill {unknown[0]!r}; choose from {', '.join(DRILLS)}")
    if not cfg.drills:
        raise UsageError("--drills is empty; name at least one of " + ", ".join(DRILLS))
    bad_hooks = [h for h in cfg.hooks if h not in {n for v in HOOKS.values() for n in v} | {"failback"}]
    if bad_hooks:
        raise UsageError(f"--inject {bad_hooks[0]}=...: unknown hook; hooks are kill, restart, hang, resume, "
                         "failover, failback")
    sc = cfg.scenario
    kinds = [e.scenario.protocol.kind for e in sc.mix] if sc.mix else [sc.protocol.kind]
    if "stream" in kinds:
        raise UsageError(f"scenario {sc.name!r} streams over WebSocket: a session lasts minutes and nginx cannot "
                         "re-send one, so the drills' request promises do not apply; drill a request/response "
                         "scenario (mobile, callcenter, emotion, tts, funasr)")
    for flag, value in (("--down", cfg.down_s), ("--settle", cfg.settle_s), ("--overload-for", cfg.overload_s),
                        ("--overload-factor", cfg.overload_factor)):
        if not value > 0:
            raise UsageError(f"{flag} must be > 0, got {value}")
    if cfg.hang_s is not None and not cfg.hang_s > 0:
        raise UsageError(f"--hang-for must be > 0 seconds, got {cfg.hang_s}")
    if cfg.target is None:
        if cfg.hooks:
            raise UsageError("--inject runs your own commands against --target URL; the embedded fleet injects "
                             "its failures itself (drop --inject or give --target)")
        if cfg.backups < 1 and "failover" in cfg.drills:
            raise UsageError("the failover drill needs a backup (--backups >= 1) or leave it out of --drills")
        if cfg.replicas - cfg.backups < 2 and any(d in cfg.drills for d in ("kill", "hang")):
            raise UsageError("kill and hang need at least 2 primaries (--replicas minus --backups)")
        return
    for d in cfg.drills:
        if d == "overload":
            if cfg.capacity_rps is None:
                raise UsageError("the overload drill against --target needs --capacity-rps (the fleet's measured "
                                 "capacity, e.g. from asrtk sweep); or leave it out of --drills")
            continue
        missing = [h for h in HOOKS[d] if h not in cfg.hooks]
        if missing:
            raise UsageError(f"drill {d} against --target needs --inject {missing[0]}='COMMAND' (what injects it "
                             f"in your deployment, e.g. --inject kill='kubectl delete pod -l app=asr --wait=false'); "
                             f"or leave {d} out of --drills")


# ----------------------------------------------------------------------------- recording


def _recorder(horizon_s: float) -> Any:
    from toolkit.drills.model import ClientRecord
    from toolkit.recorder import Recorder

    class TimelineRecorder(Recorder):
        """The bench's recorder, keeping every request as a :class:`ClientRecord` as well."""

        def __init__(self) -> None:
            super().__init__(0.0, horizon_s)
            self.records: list[ClientRecord] = []

        def record(self, o: Any) -> None:
            self.records.append(ClientRecord(o.intended_s, o.done_s, bool(o.ok), o.error_class, o.latency_s,
                                             o.retry_after))
            super().record(o)

    return TimelineRecorder()


def loadgen_check(rec: Any, cpu_s: float, wall_s: float) -> dict[str, Any]:
    """The bench's load-generator check for one drill: schedule lag p99 and late starts from the
    recorder, CPU as this process's CPU time over the drill's wall time (% of one core)."""
    from toolkit import thresholds
    from toolkit.recorder import merge_snapshots, summarize_s
    from toolkit.results import loadgen_verdict

    m = merge_snapshots([rec.snapshot()])
    lag_p99 = summarize_s(m.hist["lag"])["p99"]
    cpu = 100.0 * cpu_s / wall_s if wall_s > 0 else None
    valid, warnings = loadgen_verdict(cpu, lag_p99, m.late_starts, thresholds.from_env())
    return {"valid": valid, "warnings": warnings, "cpu_mean_percent": None if cpu is None else round(cpu, 1),
            "schedule_lag_p99_s": lag_p99, "late_starts": m.late_starts}


def host_check(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The bench's host summary over one drill's 1 Hz samples, with its warnings (disturbed)."""
    from toolkit import thresholds
    from toolkit.results import host_warnings
    from toolkit.samplers import host_summary

    if not rows:
        return None
    cores = int(rows[-1].get("_cores") or 1)
    host = host_summary(rows, cores, thresholds.from_env().disturbed_cores(cores))
    return {**host, "warnings": host_warnings(host)}


class _LogTail:
    """nginx's access log, read incrementally (the drill waits on what nginx did)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def since_mark(self) -> list[str]:
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            fh.seek(self.offset)
            return fh.readlines()


# ----------------------------------------------------------------------------- one drill


class _Drill:
    """One drill's load run: the driver, the injection greenlet, the timeline they share."""

    def __init__(self, runner: "_Runner", name: str) -> None:
        self.runner = runner
        self.name = name
        self.events: list[Event] = []
        self.t0 = 0.0
        self.epoch0 = 0.0
        self.end_s: float | None = None

    def clock(self) -> float:
        return time.perf_counter() - self.t0

    def note(self, action: str, replica: str = "", note: str = "") -> None:
        self.events.append(Event(round(self.clock(), 4), action, replica, note))
        r = self.runner
        if not r.cfg.quiet:
            _say(r.cfg, f"  {self.clock():6.2f} s  {action} {replica} {note}".rstrip())

    def sleep(self, dt: float) -> None:
        import gevent

        gevent.sleep(max(0.0, dt))

    def proxy_lines(self) -> list[str]:
        return self.runner.log.since_mark() if self.runner.log is not None else []

    def wait_pickup(self, replica: Any, since_s: float, bound_s: float) -> float | None:
        """Wait until nginx answers a request from ``replica`` (an attempt that started after
        ``since_s``), at most ``bound_s``; returns when it did, or None."""
        from toolkit.drills.logs import parse_access_log

        deadline = self.clock() + bound_s
        while self.clock() < deadline:
            for rec in parse_access_log(self.proxy_lines(), self.epoch0):
                for a in rec.attempts:
                    if a.address == replica.address and a.status == 200 and a.start_s >= since_s - 0.02:
                        return a.start_s
            self.sleep(0.2)
        return None


class _Runner:
    """The whole session: target or fleet, the prepared requests, the facts, each drill in turn."""

    def __init__(self, cfg: DrillConfig) -> None:
        self.cfg = cfg
        self.fleet: Any = None
        self.target_pids: list[int] = []  # a --target served from this host (found listening on its port)
        self.log: _LogTail | None = None
        self.base_url = ""
        self.capacity_rps: float | None = cfg.capacity_rps
        self.capacity_source = "--capacity-rps" if cfg.capacity_rps is not None else ""
        self.base_rps = 0.0
        self.proxy: Any = None  # ProxyFacts
        self.server: ServerFacts | None = None
        self.nginx_command = ""
        self.slo = Slo(cfg.scenario.slo.percentile, cfg.scenario.slo.latency_s)
        self.sets: list[Any] = []
        self.weights: list[float] = []
        self.env: Any = None
        self.current: Any = None  # the running Driver (Ctrl-C stops it)
        self.interrupted = False
        self.calibration: dict[str, Any] = {}

    # -- load ------------------------------------------------------------------------------
    def load(self, stages: tuple[Any, ...], arrival: str | None = None) -> Any:
        base = self.cfg.scenario.load
        inflight = max(int(base.max_inflight), math.ceil(3 * (self.capacity_rps or 0)), 64)
        return replace(base, mode="open", stages=stages, arrival=arrival or base.arrival, max_inflight=inflight)

    def drive(self, name: str, load: Any, horizon_s: float, action: Callable[[_Drill], None]) -> DrillRun:
        """Run ``load`` with ``action`` beside it; the action's end (``drill.end_s``) closes the
        judged window, and the load stops a second later."""
        import gevent

        from toolkit.engine.driver import Driver, DriverPlan
        from toolkit.runs.bench import request_timeout_s

        cfg = self.cfg
        timeout_s = request_timeout_s(cfg.scenario)
        seed = (cfg.seed if cfg.seed is not None else cfg.scenario.seed) * 31 + (
            DRILLS.index(name) + 1 if name in DRILLS else 0)  # each drill its own arrivals, reproducibly
        plan = DriverPlan(load=load, warmup_s=0.0, duration_s=horizon_s, request_sets=self.sets, weights=self.weights,
                          seed=seed, base_url=self.base_url, timeout_s=timeout_s, drain_s=min(30.0, timeout_s))
        rec = _recorder(horizon_s)
        drv = Driver(plan, self.env, rec)
        drill = _Drill(self, name)
        if self.log is not None:
            self.log.mark()
        failure: list[BaseException] = []

        def act() -> None:
            try:
                action(drill)
                drill.end_s = drill.clock()
                drill.sleep(1.0)  # requests intended before the end get time to finish
            except gevent.GreenletExit:
                raise
            except BaseException as exc:  # noqa: BLE001 - re-raised after the load stopped
                failure.append(exc)
            finally:
                drv.stop()

        host = self.host_sampler()

        def sample() -> None:
            while True:
                gevent.sleep(1.0)
                t = drill.clock()
                if self.fleet is not None:
                    host.source.set_target_roots(self.fleet.pids())  # replicas come and go
                    for rname, rss in self.fleet.rss_bytes().items():
                        if rss is not None:
                            samples.append((t, rname, rss))
                host_rows.append(host.sample())

        samples: list[tuple[float, str, int]] = []
        host_rows: list[dict[str, Any]] = []
        drill.t0 = time.perf_counter()
        drill.epoch0 = time.time()
        self.current = drv
        greenlets = [gevent.spawn(act), gevent.spawn(sample)]
        cpu0 = time.process_time()
        try:
            drv.run(drill.t0)
        finally:
            self.current = None
            for g in greenlets:
                g.kill()
        if failure:
            raise failure[0]
        if drill.end_s is None and not self.interrupted and name in DRILLS:
            raise TargetError(f"drill {name}: its injections did not finish within the {horizon_s:.0f} s of load "
                              "planned for them (a replica slow to start?); see the fleet's logs")
        from toolkit.drills.logs import parse_access_log

        end = drill.end_s if drill.end_s is not None else drill.clock()
        replicas = {r.name: (r.address, r.backup) for r in self.fleet.replicas} if self.fleet is not None else {}
        return DrillRun(
            name=name, window=(0.0, end), requests=list(rec.records), events=drill.events,
            proxy=parse_access_log(drill.proxy_lines(), drill.epoch0) if self.log is not None else None,
            rss=samples if self.fleet is not None else None, replicas=replicas, base_rps=self.base_rps,
            note="interrupted" if self.interrupted else "",
            loadgen=loadgen_check(rec, time.process_time() - cpu0, time.perf_counter() - drill.t0),
            host=host_check(host_rows))

    def host_sampler(self) -> Any:
        """This host's CPU, split into the load generator, the target (the fleet, or a target found
        listening here) and other work: the interference that labels a drill disturbed."""
        from toolkit.samplers import HostSampler, PsutilSource

        roots = self.fleet.pids() if self.fleet is not None else self.target_pids
        return HostSampler(PsutilSource(target_pids=roots))

    # -- facts ---------------------------------------------------------------------------------
    def facts(self) -> Any:
        from toolkit.drills.judge import Facts

        return Facts(slo=self.slo, proxy=self.proxy, server=self.server, proxy_log=self.log is not None)


# ----------------------------------------------------------------------------- the embedded fleet


def _fleet_spec(runner: _Runner, listen: str, capacity_rps: float, latency_max_s: float | None,
                sources: dict[str, str]) -> Any:
    from toolkit.generators import spec as S
    from toolkit.units import format_slo

    cfg, fleet = runner.cfg, runner.fleet
    spec = S.from_flags([r.address for r in fleet.primaries], [r.address for r in fleet.replicas if r.backup],
                        target_qps=max(1.0, round(runner.base_rps or capacity_rps, 2)),
                        slo=format_slo(runner.slo.percentile, runner.slo.latency_s), capacity_rps=capacity_rps)
    flags: dict[str, tuple[Any, str]] = {}
    if latency_max_s is not None:
        flags["latency_max_s"] = (latency_max_s, sources.get("latency_max_s", "asrtk drill calibration"))
    flags["planned_capacity_rps"] = (capacity_rps, sources.get("capacity", "asrtk drill calibration"))
    if cfg.max_fails is not None:
        flags["max_fails"] = (cfg.max_fails, f"--max-fails {cfg.max_fails}")
    if cfg.fail_timeout_s is not None:
        flags["fail_timeout_s"] = (cfg.fail_timeout_s, f"--fail-timeout {cfg.fail_timeout_s}s")
    if cfg.retry_non_idempotent is not None:
        flags["retry_non_idempotent"] = (cfg.retry_non_idempotent, "--retry-non-idempotent")
    return spec.with_flags(flags).with_overrides(listen=listen)


def _write_nginx(runner: _Runner, spec: Any) -> str:
    """Write the generated ``asrtk.conf`` (and a wrapper whose access log records every upstream
    tried) and check it with ``nginx -t``; returns the config text."""
    import os

    from toolkit.drills.logs import ACCESS_LOG_FORMAT, ACCESS_LOG_NAME
    from toolkit.generators import nginx

    conf = nginx.render(spec)
    wrapper = nginx.standalone_wrapper("asrtk.conf", run_as="root" if os.geteuid() == 0 else None,
                                       access_log_format=(ACCESS_LOG_NAME, ACCESS_LOG_FORMAT))
    runner.fleet.write_nginx(conf, wrapper)
    return conf


def _generate_command(runner: _Runner, spec: Any) -> str:
    fleet = runner.fleet
    parts = ["asrtk generate nginx"]
    parts += [f"--upstream {r.address}" for r in fleet.primaries]
    parts += [f"--backup {r.address}" for r in fleet.replicas if r.backup]
    parts += [f"--target-qps {spec.target_qps:g}", f"--capacity-rps {spec.planned_capacity_rps:g}",
              f"--slo p{spec.slo_percentile * 100:g}={spec.slo_latency_s:g}s"]
    from toolkit.generators.nginx import read_timeout

    parts.append(f"--read-timeout {read_timeout(spec)[0]}s")
    parts.append(f"--listen {spec.listen}")
    if not spec.retry_non_idempotent:
        parts.append("--no-retry-non-idempotent")
    return " ".join(parts)


def _server_flags(cfg: DrillConfig, max_queue: int | None) -> list[str]:
    flags = ["--threads", "1", "--not-ready", "refuse", "--memory-budget-mb", f"{FLEET_MEMORY_BUDGET_MB:g}"]
    if max_queue is not None:
        flags += ["--max-queue", str(max_queue)]
    return flags + list(cfg.server_args)


def _server_facts(args: list[str]) -> ServerFacts:
    """What the replicas run with: the last value of each flag wins, as on their command line."""
    from reference_server.config import ServerConfig

    d = ServerConfig()
    vals = {"--memory-budget-mb": d.memory_budget_mb, "--max-queue": d.max_queue, "--drain-grace-s": d.drain_grace_s,
            "--drain-timeout-s": d.drain_timeout_s}
    i = 0
    while i < len(args):
        a = args[i]
        key, _, val = a.partition("=")
        if key in vals:
            if not val and i + 1 < len(args):
                val, i = args[i + 1], i + 1
            try:
                vals[key] = float(val)
            except ValueError:
                pass
        i += 1
    return ServerFacts(memory_budget_mb=float(vals["--memory-budget-mb"]), max_queue=int(vals["--max-queue"]),
                       drain_grace_s=float(vals["--drain-grace-s"]), drain_timeout_s=float(vals["--drain-timeout-s"]))


def _calibrate(runner: _Runner) -> None:
    """Capacity of the fleet through nginx: a closed loop of a few users per primary."""
    from toolkit.scenario import Stage

    fleet = runner.fleet
    users = CALIBRATION_USERS_PER_PRIMARY * len(fleet.primaries)
    load = replace(runner.cfg.scenario.load, mode="closed", stages=(Stage(duration_s=CALIBRATION_S, users=users),),
                   arrival="poisson", think_time_s=0.0, max_inflight=max(64, users))

    def idle(d: _Drill) -> None:
        d.sleep(CALIBRATION_S)

    run = runner.drive("calibration", load, CALIBRATION_S, idle)
    ok = [r for r in run.requests if r.ok and r.intended_s >= 1.0]
    bad = [r for r in run.requests if not r.ok]
    if not ok:
        worst = bad[0].error_class if bad else "nothing answered"
        raise TargetError(f"calibration through nginx failed: no request succeeded ({worst}); see {fleet.error_log}")
    span = max(1e-9, max(r.done_s for r in ok) - 1.0)
    cap = len(ok) / span
    lat = sorted(r.latency_s for r in ok)
    from toolkit.drills.judge import nearest_rank

    runner.calibration = {"users": users, "seconds": round(span, 2), "requests": len(ok), "errors": len(bad),
                          "capacity_rps": round(cap, 2), "p50_s": nearest_rank(lat, 0.5),
                          "p95_s": nearest_rank(lat, 0.95), "max_s": lat[-1]}


def _start_fleet(runner: _Runner, work: Path) -> None:
    from toolkit.drills.logs import proxy_facts
    from toolkit.engine import schedule
    from toolkit.runs.fleet import EmbeddedFleet, FleetConfig, free_port
    from toolkit.scenario import Stage

    cfg = runner.cfg
    runner.fleet = fleet = EmbeddedFleet(FleetConfig(replicas=cfg.replicas, backups=cfg.backups, preset=cfg.model,
                                                     server_args=_server_flags(cfg, None)), work)
    _say(cfg, f"drill: starting {cfg.replicas} reference servers ({cfg.backups} backup) and nginx on loopback ...")
    fleet.start()
    listen = f"127.0.0.1:{free_port()}"
    # 1. provisional config (no rate limit to speak of) to measure the fleet through nginx
    port = int(listen.rsplit(":", 1)[1])
    spec = _fleet_spec(runner, listen, 100000.0, None, {"capacity": "provisional, for the calibration"})
    _write_nginx(runner, spec)
    fleet.start_nginx(port)
    runner.base_url = fleet.url
    _calibrate(runner)
    cal = runner.calibration
    if runner.capacity_rps is None:
        runner.capacity_rps = cal["capacity_rps"]
        runner.capacity_source = (f"asrtk drill calibration: {cal['requests']} requests in {cal['seconds']:g} s, "
                                  f"{cal['users']} closed-loop users through nginx")
    cap = float(runner.capacity_rps)
    unit = schedule.max_rate(replace(cfg.scenario.load, mode="open", stages=(Stage(duration_s=1.0, rate=1.0),)))
    runner.base_rps = cfg.rate if cfg.rate is not None else base_rate(cap, len(fleet.primaries), unit)
    # 2. the replicas' queue sized from the capacity and the SLO, then nginx from the measurement
    per_replica = cap / len(fleet.primaries)
    max_queue = max(2, math.ceil(per_replica * runner.slo.latency_s * QUEUE_SHARE_OF_SLO))
    fleet.cfg.server_args = _server_flags(cfg, max_queue)
    runner.server = _server_facts(fleet.cfg.server_args)
    _say(cfg, f"drill: fleet capacity {cap:.1f} req/s ({runner.capacity_source}); base load {runner.base_rps:g} req/s "
              f"mean; replicas restarted with --max-queue {max_queue}")
    fleet.stop_nginx()
    for r in fleet.replicas:
        fleet.terminate(r)
        fleet.restart(r)
    from toolkit.capacity.planfile import DEFAULTS

    headroom = float(DEFAULTS["headroom"])
    spec = _fleet_spec(runner, listen, round(headroom * cap, 2), cal["max_s"],
                       {"capacity": f"{headroom:g} (the plan's default headroom) x the measured {cap:.1f} req/s "
                                    f"({runner.capacity_source})",
                        "latency_max_s": f"asrtk drill calibration: slowest of {cal['requests']} requests"})
    conf = _write_nginx(runner, spec)
    for name in ("access.log", "error.log"):
        (fleet.nginx_dir / name).unlink(missing_ok=True)  # the drills' logs start here
    fleet.start_nginx(port)
    runner.proxy = proxy_facts(conf, str(fleet.nginx_dir / "asrtk.conf"))
    runner.nginx_command = _generate_command(runner, spec)
    runner.log = _LogTail(fleet.access_log)


# ----------------------------------------------------------------------------- the drills' actions


def base_rate(capacity_rps: float, primaries: int, peak_per_mean: float) -> float:
    """Mean rate of the base load: its peak (``peak_per_mean`` x the mean: 4 for mobile's bursts) keeps
    the fleet minus one primary at :data:`SURVIVOR_UTILISATION`."""
    survivors = capacity_rps * max(1, primaries - 1) / max(1, primaries)
    return round(SURVIVOR_UTILISATION * survivors / max(1.0, peak_per_mean), 2)


def inject_time(load: Any, settle_s: float) -> float:
    """When a drill injects its failure: after ``settle_s`` of load, and with bursty arrivals at the
    next burst (a quarter into it), so the failure meets the most requests in flight, not a lull."""
    if getattr(load, "arrival", "poisson") != "bursty":
        return settle_s
    period = float(load.burst_period_s)
    offset = 0.25 * float(load.burst_on_fraction) * period
    return math.ceil((settle_s - offset) / period - 1e-9) * period + offset


def _stage(seconds: float, rate: float) -> Any:
    from toolkit.scenario import Stage

    return Stage(duration_s=max(0.001, seconds), rate=rate)


def _bounds(runner: _Runner) -> tuple[float, float]:
    px = runner.proxy
    return (px.fail_timeout_s if px is not None else 10.0), (px.read_timeout_s if px is not None else 60.0)


def _embedded_drill(runner: _Runner, name: str) -> DrillRun:
    cfg, fleet = runner.cfg, runner.fleet
    ft, rt = _bounds(runner)
    pickup_s = ft + PICKUP_MARGIN_S
    start_s = max(fleet.startup_s or [5.0]) * 3 + 5.0
    base = runner.base_rps
    victim = fleet.primaries[0]
    at = inject_time(cfg.scenario.load, cfg.settle_s)

    def kill(d: _Drill) -> None:
        d.sleep(at)
        d.note("kill", victim.name, "SIGKILL")
        fleet.kill(victim)
        d.sleep(cfg.down_s)
        d.note("start", victim.name)
        fleet.restart(victim)
        d.note("ready", victim.name)
        got = d.wait_pickup(victim, d.clock(), pickup_s)
        d.note("routed", victim.name, "nginx routes to it again" if got is not None else "nginx did not route to it")
        d.sleep(cfg.post_s)

    def restart(d: _Drill) -> None:
        d.sleep(at)
        for r in fleet.primaries + [b for b in fleet.replicas if b.backup]:
            d.note("sigterm", r.name, "SIGTERM")
            code = fleet.terminate(r)
            d.note("exited", r.name, f"exit code {code}")
            d.note("start", r.name)
            fleet.restart(r)
            d.note("ready", r.name)
            if not r.backup:
                # behind passive health checks /ready is not enough: nginx keeps a server it saw
                # fail out for fail_timeout, and restarting the next one meanwhile leaves none
                got = d.wait_pickup(r, d.clock(), pickup_s)
                d.note("routed", r.name, "nginx routes to it again" if got is not None else "nginx did not route to it")
        d.sleep(cfg.post_s)

    hang_s = cfg.hang_s if cfg.hang_s is not None else rt + 3.0

    def hang(d: _Drill) -> None:
        d.sleep(at)
        d.note("sigstop", victim.name, "SIGSTOP")
        fleet.freeze(victim)
        try:
            d.sleep(hang_s)
        finally:
            fleet.thaw(victim)
        d.note("sigcont", victim.name, "SIGCONT")
        got = d.wait_pickup(victim, d.clock(), pickup_s + rt)
        d.note("routed", victim.name, "nginx routes to it again" if got is not None else "nginx did not route to it")
        d.sleep(cfg.post_s)

    def failover(d: _Drill) -> None:
        d.sleep(at)
        for r in fleet.primaries:
            d.note("kill", r.name, "SIGKILL")
            fleet.kill(r)
        d.sleep(cfg.down_s)
        for r in fleet.primaries:
            d.note("start", r.name)
            fleet.restart(r)
            d.note("ready", r.name)
        since = min(e.t_s for e in d.events if e.action == "ready")
        for r in fleet.primaries:
            got = d.wait_pickup(r, since, pickup_s)
            d.note("routed", r.name, "nginx routes to it again" if got is not None else "nginx did not route to it")
        d.sleep(cfg.post_s)

    n = len(fleet.replicas)
    if name == "overload":
        return _overload_drill(runner)
    horizon = {
        "kill": at + cfg.down_s + start_s + pickup_s + cfg.post_s + 5.0,
        "restart": at + n * (30.0 + start_s + pickup_s) + cfg.post_s + 5.0,
        "hang": at + hang_s + pickup_s + rt + cfg.post_s + 5.0,
        "failover": at + cfg.down_s + n * start_s + n * pickup_s + cfg.post_s + 5.0,
    }[name]
    action = {"kill": kill, "restart": restart, "hang": hang, "failover": failover}[name]
    return runner.drive(name, runner.load((_stage(horizon, base),)), horizon, action)


def _overload_drill(runner: _Runner) -> DrillRun:
    """``--overload-factor`` x the capacity for ``--overload-for``, Poisson, between two spells of
    the base load; the same against the fleet and a target (no injection but the load itself)."""
    cfg, base = runner.cfg, runner.base_rps
    over_rps = cfg.overload_factor * float(runner.capacity_rps or 0)
    after = max(cfg.post_s, runner.slo.latency_s + 3.0)  # what was admitted drains within the SLO

    def overload(d: _Drill) -> None:
        d.sleep(cfg.settle_s)
        d.note("overload_start", "", f"{over_rps:.0f} req/s")
        d.sleep(cfg.overload_s)
        d.note("overload_end", "", f"back to {base:g} req/s")
        d.sleep(after)

    tail = after + 5.0
    stages = (_stage(cfg.settle_s, base), _stage(cfg.overload_s, over_rps), _stage(tail, base))
    horizon = cfg.settle_s + cfg.overload_s + tail
    return runner.drive("overload", runner.load(stages, arrival="poisson"), horizon, overload)


def _run_hook(runner: _Runner, d: _Drill, hook: str) -> None:
    cmd = runner.cfg.hooks[hook]
    d.note("hook" if hook not in ("resume", "failback") else "hook_end", "", f"{hook}: {cmd}")
    limit = runner.cfg.hook_timeout_s
    try:  # the user's own command line, as they typed it: through the shell, like a git hook
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=limit)  # noqa: S602
    except subprocess.TimeoutExpired as exc:
        raise TargetError(f"--inject {hook}: the command did not finish within {limit:g} s") from exc
    d.note("hook_done", "", f"{hook}: exit code {r.returncode}")
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
        raise TargetError(f"--inject {hook}: the command exited {r.returncode} ({tail[0][:200]}); the drill stops "
                          "here, nothing was judged")


def _target_drill(runner: _Runner, name: str) -> DrillRun:
    cfg = runner.cfg
    ft, rt = _bounds(runner)
    observe = cfg.observe_s if cfg.observe_s is not None else (ft + 5.0 if runner.proxy is not None else 15.0)
    base = runner.base_rps
    hang_s = cfg.hang_s if cfg.hang_s is not None else rt + 3.0

    at = inject_time(cfg.scenario.load, cfg.settle_s)

    def injected(d: _Drill) -> None:
        d.sleep(at)
        if name == "hang":
            _run_hook(runner, d, "hang")
            d.sleep(hang_s)
            _run_hook(runner, d, "resume")
        else:
            _run_hook(runner, d, name)
            if name == "failover" and "failback" in cfg.hooks:
                d.sleep(cfg.down_s)
                _run_hook(runner, d, "failback")
        d.sleep(observe)

    if name == "overload":
        return _overload_drill(runner)
    horizon = at + 2 * cfg.hook_timeout_s + hang_s + cfg.down_s + observe + 5.0
    return runner.drive(name, runner.load((_stage(horizon, base),)), horizon, injected)


# ----------------------------------------------------------------------------- the session


def run_drill(cfg: DrillConfig, now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> DrillOutcome:
    """Run every drill of ``cfg.drills`` and write the run directory. Ctrl-C stops the current
    drill and writes what was judged so far (``complete: false``)."""
    check_config(cfg)  # before anything is imported or started: a usage error costs nothing
    import locust  # noqa: F401  - gevent monkey-patching, first thing

    import signal

    import gevent

    from toolkit import results
    from toolkit.drills.judge import judge
    from toolkit.engine.driver import new_environment
    from toolkit.engine.requests import prepare_request_sets

    created = now()
    run_dir = results.new_run_dir(Path(cfg.out_dir), "drill", created)
    runner = _Runner(cfg)
    runner.env = new_environment()
    out: list[DrillResult] = []
    runs: list[DrillRun] = []
    failure: str | None = None

    def on_sigint() -> None:
        runner.interrupted = True
        if runner.current is not None:
            runner.current.stop()  # the drill's load stops; the loop below ends after it
        else:
            main.throw(KeyboardInterrupt)  # starting the fleet, or between drills

    main = gevent.getcurrent()
    prev = signal.getsignal(signal.SIGINT)
    handler = gevent.signal_handler(signal.SIGINT, on_sigint)
    t_start = time.perf_counter()
    try:
        try:
            runner.sets, runner.weights = prepare_request_sets(cfg.scenario, cfg.headers)
            if cfg.target is None:
                _start_fleet(runner, run_dir / "fleet")
            else:
                _start_target(runner)
            for name in cfg.drills:
                _say(cfg, f"drill {name}: ...")
                t = time.perf_counter()
                run = _embedded_drill(runner, name) if cfg.target is None else _target_drill(runner, name)
                if runner.interrupted:
                    break  # a drill cut short is not judged
                res = judge(run, runner.facts())
                res.wall_s = time.perf_counter() - t
                res.loadgen, res.host = run.loadgen, run.host
                runs.append(run)
                out.append(res)
                state = {True: "held", False: "BROKEN", None: "partly unknown"}[res.passed]
                _say(cfg, f"drill {name}: {state} ({res.wall_s:.0f} s): {res.detail}")
                for warning in (run.loadgen or {}).get("warnings", []):
                    _say(cfg, f"drill {name}: load generator INVALID: {warning}")
                for warning in (run.host or {}).get("warnings", []):
                    _say(cfg, f"drill {name}: DISTURBED host: {warning}")
        except KeyboardInterrupt:
            runner.interrupted = True
        except TargetError as exc:
            failure = str(exc)
    finally:
        handler.cancel()
        signal.signal(signal.SIGINT, prev if prev is not None else signal.default_int_handler)
        if runner.fleet is not None:
            runner.fleet.stop()
    wall = time.perf_counter() - t_start
    summary = _write(cfg, runner, run_dir, created, runs, out, wall, failure)
    if failure is not None and not out:
        raise TargetError(f"{failure}; partial results in {run_dir}")
    if failure is not None:
        raise TargetError(f"{failure} (the drills before it were judged: {run_dir})")
    return DrillOutcome(run_dir=run_dir, results=out, summary=summary, interrupted=runner.interrupted)


def _start_target(runner: _Runner) -> None:
    from toolkit.drills.logs import proxy_facts
    from toolkit.engine import probe
    from toolkit.engine import schedule
    from toolkit.engine.local_target import discover
    from toolkit.scenario import Stage
    from toolkit.units import split_target

    cfg = runner.cfg
    base_url, path = split_target(cfg.target or "")
    if path:  # a path in the URL replaces the scenario's, as for bench
        from toolkit.engine.requests import prepare_request_sets
        from toolkit.scenario import with_overrides

        cfg.scenario = with_overrides(cfg.scenario, target_path=path)
        runner.sets, runner.weights = prepare_request_sets(cfg.scenario, cfg.headers)
    probe.preflight(base_url, cfg.headers)
    runner.base_url = base_url
    runner.target_pids = discover(base_url).pids  # empty for a target on another host
    if cfg.nginx_conf is not None:
        try:
            text = Path(cfg.nginx_conf).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--nginx-conf {cfg.nginx_conf} cannot be read ({exc.strerror})") from None
        try:
            runner.proxy = proxy_facts(text, str(cfg.nginx_conf))
        except ValueError as exc:
            raise UsageError(f"--nginx-conf: {exc}") from None
    if cfg.rate is not None:
        runner.base_rps = cfg.rate
    elif runner.capacity_rps is not None:
        unit = schedule.max_rate(replace(cfg.scenario.load, mode="open", stages=(Stage(duration_s=1.0, rate=1.0),)))
        runner.base_rps = base_rate(runner.capacity_rps, 2, unit)  # the primaries behind a target are unknown
    else:
        runner.base_rps = schedule.base_rate_at(cfg.scenario.load, 0.0) or 1.0


def _write(cfg: DrillConfig, runner: _Runner, run_dir: Path, created: datetime, runs: list[DrillRun],
           out: list[DrillResult], wall_s: float, failure: str | None) -> dict:
    from toolkit import __version__, results
    from toolkit.drills import outputs
    from toolkit.drills.model import exit_code
    from toolkit.units import public_url

    complete = not runner.interrupted and failure is None and len(out) == len(cfg.drills)
    target = {"url": public_url(runner.base_url) if runner.base_url else None, "embedded": cfg.target is None}
    if runner.fleet is not None:
        target["fleet"] = {
            "replicas": [{"name": r.name, "address": r.address, "backup": r.backup} for r in runner.fleet.replicas],
            "model": cfg.model, "server_flags": runner.fleet.cfg.server_args,
            "nginx_conf": str(runner.fleet.nginx_dir / "asrtk.conf"), "generate_command": runner.nginx_command,
            "startup_s_max": round(max(runner.fleet.startup_s or [0.0]), 3),
        }
    if cfg.target is not None:
        target["hooks"] = {k: v for k, v in cfg.hooks.items()}
    summary = outputs.build_summary(
        asrtk_version=__version__, created=created, complete=complete,
        incomplete_reason=None if complete else ("interrupted" if runner.interrupted else failure or "stopped early"),
        scenario=cfg.scenario.name, target=target, capacity_rps=runner.capacity_rps,
        capacity_source=runner.capacity_source, calibration=runner.calibration or None, base_rps=runner.base_rps,
        facts=runner.facts(), results=out, runs=runs, wall_s=wall_s, exit_code=exit_code(out))
    results.write_json_atomic(run_dir / outputs.FILES["summary"], summary)
    rows = outputs.timeline_rows(runs, runner.slo)
    results.write_csv(run_dir / outputs.FILES["timeline"], outputs.TIMELINE_COLUMNS, rows)
    results.write_csv(run_dir / outputs.FILES["events"], outputs.EVENT_COLUMNS, outputs.event_rows(runs))
    (run_dir / outputs.FILES["report_md"]).write_text(outputs.render_markdown(summary, rows), encoding="utf-8")
    (run_dir / outputs.FILES["report_html"]).write_text(outputs.render_html(summary, rows), encoding="utf-8")
    return summary
