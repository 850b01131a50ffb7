"""Several load-generating processes: a Locust master with Locust workers (ZeroMQ).

Locust's runners carry the messages; Locust users are not used. The master sends each
worker its share of the scenario (``asrtk_prepare``), waits until every worker has built
its requests, then starts them together (``asrtk_start``). Workers ship exact HDR
histograms (encoded, per second, plus their measured-window totals) through Locust's
``report_to_master`` event every few seconds and a final ``asrtk_done`` message; the
master merges them (``worker_report``). Independent Poisson streams at rate r/N add up to
one Poisson stream at rate r.

Remote machines join with ``asrtk worker --master HOST --master-port PORT`` while the
master runs ``asrtk bench --expect-workers N --master-bind 0.0.0.0 --master-port PORT``.
The scenario travels pickled from master to workers: connect workers only to a master you
trust, on a private network.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

MSG_PREPARE = "asrtk_prepare"
MSG_PREPARED = "asrtk_prepared"
MSG_START = "asrtk_start"
MSG_STOP = "asrtk_stop"
MSG_DONE = "asrtk_done"
MSG_FAILED = "asrtk_failed"
START_DELAY_S = 1.0


def run_distributed(*, scenario: Any, plan: Any, headers: dict[str, str], local: int, remote: int, bind: str,
                    port: int, aggregator: Any, on_started: Callable[[float, list[int]], None],
                    stoppers: list, host_sampler: Any, say: Callable[[str], None]) -> dict[str, Any]:
    """Run ``plan`` over ``local`` spawned workers plus ``remote`` joining ones; returns
    extra summary fields (warnings)."""
    import gevent
    from locust.env import Environment

    from toolkit.errors import AsrtkError, TargetError

    env = Environment()
    master = env.create_master_runner(master_bind_host=bind, master_bind_port=port)
    port = master.server.port
    n = local + remote
    prepared: set[str] = set()
    done: set[str] = set()
    failures: list[str] = []
    warnings: list[str] = []

    def on_report(client_id: str, data: dict) -> None:
        payload = data.get("asrtk")
        aggregator.ingest(client_id, payload)
        if payload and payload.get("cpu_percent") is not None:
            host_sampler.extra_loadgen[client_id] = float(payload["cpu_percent"])

    env.events.worker_report.add_listener(on_report)
    master.register_message(MSG_PREPARED, lambda environment, msg, **kw: prepared.add(msg.node_id))
    master.register_message(MSG_FAILED, lambda environment, msg, **kw: failures.append(str(msg.data)))

    def on_done(environment: Any, msg: Any, **kw: Any) -> None:
        on_report(msg.node_id, {"asrtk": msg.data})
        done.add(msg.node_id)

    master.register_message(MSG_DONE, on_done)

    log = tempfile.NamedTemporaryFile(prefix="asrtk-workers-", suffix=".log", delete=False)
    host = "127.0.0.1" if bind in ("0.0.0.0", "*", "") else bind
    import toolkit

    env_vars = dict(os.environ)  # workers import this same toolkit, installed or not
    root = os.path.dirname(os.path.dirname(os.path.abspath(toolkit.__file__)))
    env_vars["PYTHONPATH"] = os.pathsep.join(p for p in (root, env_vars.get("PYTHONPATH", "")) if p)
    procs = [
        subprocess.Popen([sys.executable, "-m", "toolkit.engine.distributed", "--master-host", host,
                          "--master-port", str(port)], stdout=log, stderr=log, start_new_session=True,
                         env=env_vars)
        for _ in range(local)
    ]
    try:
        if remote:
            say(f"waiting for {remote} remote worker(s): run `asrtk worker --master <this host> "
                f"--master-port {port}` on each")
        deadline = time.monotonic() + (60.0 if not remote else 600.0)
        while len(master.clients) < n:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise AsrtkError(f"only {len(master.clients)} of {n} load-generator workers connected; "
                                 f"see {log.name}")
            gevent.sleep(0.1)
        ids = sorted(master.clients.keys())[:n]
        blob = pickle.dumps(scenario)
        for i, cid in enumerate(ids):
            master.send_message(MSG_PREPARE, {
                "scenario": blob, "base_url": plan.base_url, "headers": headers, "timeout_s": plan.timeout_s,
                "drain_s": plan.drain_s, "part": i, "parts": n}, client_id=cid)
        deadline = time.monotonic() + 600.0
        while len(prepared) < n:
            if failures:
                raise TargetError(f"a load-generator worker failed to prepare: {failures[0]}")
            if time.monotonic() > deadline:
                raise AsrtkError(f"only {len(prepared)} of {n} workers prepared their requests; see {log.name}")
            gevent.sleep(0.05)
        t0 = time.perf_counter() + START_DELAY_S
        for cid in ids:
            master.send_message(MSG_START, {"delay_s": START_DELAY_S}, client_id=cid)
        on_started(t0, [p.pid for p in procs])
        def stop() -> None:
            for cid in ids:
                master.send_message(MSG_STOP, None, client_id=cid)

        stoppers.append(stop)
        end = t0 + plan.horizon_s + plan.drain_s + 15.0
        while len(done) < n:
            now = time.perf_counter()
            if now > end:
                break
            lost = [cid for cid in ids if cid not in master.clients and cid not in done]
            if lost and now > t0 + 5.0:
                gevent.sleep(1.0)  # its last report may still be in flight
                if len(done) + len(lost) >= n:
                    break
            gevent.sleep(0.1)
        missing = n - len(done)
        if missing:
            warnings.append(f"{missing} load-generator worker(s) did not finish; their last report "
                            f"(<= 3 s old) is included")
        return {"warnings": warnings}
    finally:
        try:
            master.quit()
        except Exception:  # noqa: BLE001 - shutting down; the workers are killed below anyway
            pass
        for p in procs:
            try:
                p.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5.0)
        log.close()


def worker_main(master_host: str, master_port: int) -> int:
    """One load-generator worker: connects to the master, does what it says, exits on quit."""
    import locust  # noqa: F401 - gevent monkey-patching first

    import gevent
    import psutil
    from locust.env import Environment

    from toolkit.engine.requests import prepare_request_sets
    from toolkit.engine.driver import Driver, DriverPlan
    from toolkit.recorder import Recorder

    env = Environment()
    runner = env.create_worker_runner(master_host, master_port)
    me = psutil.Process()
    me.cpu_percent(None)
    st: dict[str, Any] = {"pending": [], "rec": None, "drv": None, "plan": None}

    def payload(final: bool) -> dict:
        ivs, st["pending"] = st["pending"], []
        rec = st["rec"]
        return {"intervals": ivs, "totals": rec.snapshot() if rec is not None else None,
                "cpu_percent": me.cpu_percent(None), "final": final}

    def on_report(client_id: str, data: dict) -> None:
        if st["rec"] is not None:
            data["asrtk"] = payload(False)

    env.events.report_to_master.add_listener(on_report)

    def prepare(msg: Any) -> None:
        try:
            d = msg.data
            scenario = pickle.loads(d["scenario"])  # noqa: S301 - from the master this worker was told to trust
            sets, weights = prepare_request_sets(scenario, d["headers"])
            st["plan"] = DriverPlan(
                load=scenario.load, warmup_s=scenario.warmup_s, duration_s=scenario.duration_s,
                request_sets=sets, weights=weights, seed=scenario.seed, base_url=d["base_url"],
                timeout_s=d["timeout_s"], drain_s=d["drain_s"], share=1.0 / d["parts"], part=d["part"],
                parts=d["parts"])
            runner.send_message(MSG_PREPARED, None)
        except Exception as exc:  # noqa: BLE001 - reported to the master as one line
            runner.send_message(MSG_FAILED, f"{type(exc).__name__}: {exc}")

    def start(msg: Any) -> None:
        t0 = time.perf_counter() + float(msg.data["delay_s"])
        plan = st["plan"]
        rec = Recorder(plan.warmup_s, plan.duration_s)
        drv = Driver(plan, env, rec, on_intervals=lambda ivs: st["pending"].extend(ivs))
        st["rec"], st["drv"] = rec, drv
        drv.run(t0)
        runner.send_message(MSG_DONE, payload(True))

    def stop(msg: Any) -> None:
        if st["drv"] is not None:
            st["drv"].stop()

    runner.register_message(MSG_PREPARE, lambda environment, msg, **kw: gevent.spawn(prepare, msg))
    runner.register_message(MSG_START, lambda environment, msg, **kw: gevent.spawn(start, msg))
    runner.register_message(MSG_STOP, lambda environment, msg, **kw: stop(msg))
    import signal

    gevent.signal_handler(signal.SIGINT, lambda: stop(None))
    gevent.signal_handler(signal.SIGTERM, lambda: stop(None))
    runner.greenlet.join()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m toolkit.engine.distributed")
    ap.add_argument("--master-host", default="127.0.0.1")
    ap.add_argument("--master-port", type=int, default=5557)
    a = ap.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return worker_main(a.master_host, a.master_port)


if __name__ == "__main__":
    sys.exit(main())
