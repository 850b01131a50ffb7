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

Security. Locust's ZeroMQ link authenticates nobody, so asrtk does, on top of it, with a secret
the master and its workers share (``--secret`` / ``ASRTK_CLUSTER_SECRET``; for the workers a
bench spawns itself, a random one per run, passed in their environment). Every worker answers
the master's challenge (``asrtk_hello``: a fresh nonce) with an HMAC-SHA256 over both nonces and
its id (``asrtk_proof``); only workers that prove the secret are used, and only they receive the
run (``asrtk_prepare``), which carries the request headers. The run is one JSON document (the
scenario as plain data, validated on arrival like a scenario file) with an HMAC over it and the
worker's own nonce, so a worker acts only on what its real master sent for this connection: a
fake master can make it do nothing, and no code travels: the wire carries JSON only.
Reports from unauthenticated clients are ignored. Binding the master beyond loopback, waiting for
remote workers and joining a remote master all need the secret.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from toolkit.units import is_loopback

MSG_PREPARE = "asrtk_prepare"
MSG_PREPARED = "asrtk_prepared"
MSG_START = "asrtk_start"
MSG_STOP = "asrtk_stop"
MSG_DONE = "asrtk_done"
MSG_FAILED = "asrtk_failed"
MSG_HELLO = "asrtk_hello"
MSG_PROOF = "asrtk_proof"
START_DELAY_S = 1.0
SECRET_ENV = "ASRTK_CLUSTER_SECRET"
MIN_SECRET_CHARS = 16
MAX_RUN_BYTES = 8 * 2**20  # a scenario and its headers; far more than any real one


def cluster_secret(explicit: str | None = None) -> str | None:
    """The shared secret: the flag's value, else ``ASRTK_CLUSTER_SECRET``, else None.
    UsageError when it is too short to be a secret."""
    from toolkit.errors import UsageError

    value = explicit if explicit is not None else os.environ.get(SECRET_ENV)
    if value is None or value == "":
        return None
    if len(value) < MIN_SECRET_CHARS:
        raise UsageError(f"the cluster secret (--secret / {SECRET_ENV}) must be at least {MIN_SECRET_CHARS} "
                         "characters; make one with: python3 -c 'import secrets; print(secrets.token_hex(32))'")
    return value


def _mac(secret: str, *parts: str) -> str:
    msg = "\x1f".join(parts).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def _valid_mac(secret: str, mac: object, *parts: str) -> bool:
    return isinstance(mac, str) and hmac.compare_digest(mac.encode("ascii", "replace"), _mac(secret, *parts).encode())


def require_secret_for(bind: str, remote: int, secret: str | None) -> None:
    """Refuse a master that listens beyond loopback or waits for remote workers without a secret."""
    from toolkit.errors import UsageError

    if secret is None and (remote or not is_loopback(bind)):
        why = f"--master-bind {bind}" if not is_loopback(bind) else f"--expect-workers {remote}"
        raise UsageError(f"{why} lets other machines join this run: set a shared secret with --secret or "
                         f"{SECRET_ENV} (the same on every `asrtk worker`)")


def run_distributed(*, scenario: Any, plan: Any, headers: dict[str, str], local: int, remote: int, bind: str,
                    port: int, aggregator: Any, on_started: Callable[[float, list[int]], None],
                    stoppers: list, host_sampler: Any, say: Callable[[str], None],
                    secret: str | None = None) -> dict[str, Any]:
    """Run ``plan`` over ``local`` spawned workers plus ``remote`` joining ones; returns
    extra summary fields (warnings)."""
    import gevent
    from locust.env import Environment

    from toolkit.errors import AsrtkError, TargetError

    require_secret_for(bind, remote, secret)
    key = secret or secrets.token_hex(32)  # local workers only: a fresh secret for this run
    env = Environment()
    master = env.create_master_runner(master_bind_host=bind, master_bind_port=port)
    port = master.server.port
    n = local + remote
    prepared: set[str] = set()
    done: set[str] = set()
    failures: list[str] = []
    warnings: list[str] = []
    challenged: dict[str, str] = {}  # client id -> the nonce the master sent it
    proven: dict[str, str] = {}  # client id -> its own nonce, once it proved the secret
    refused: set[str] = set()

    def on_proof(environment: Any, msg: Any, **kw: Any) -> None:
        cid, d = msg.node_id, msg.data if isinstance(msg.data, dict) else {}
        ours, theirs = challenged.get(cid), d.get("nonce")
        if ours is not None and isinstance(theirs, str) and len(theirs) == 64 and \
                _valid_mac(key, d.get("mac"), "worker", cid, ours, theirs):
            proven[cid] = theirs
        else:
            refused.add(cid)

    def on_report(client_id: str, data: dict) -> None:
        if client_id not in proven:
            return  # an unauthenticated client's figures never reach the results
        payload = data.get("asrtk")
        aggregator.ingest(client_id, payload)
        if payload and payload.get("cpu_percent") is not None:
            host_sampler.extra_loadgen[client_id] = float(payload["cpu_percent"])

    env.events.worker_report.add_listener(on_report)
    master.register_message(MSG_PROOF, on_proof)
    master.register_message(MSG_PREPARED, lambda environment, msg, **kw:
                            prepared.add(msg.node_id) if msg.node_id in proven else None)
    master.register_message(MSG_FAILED, lambda environment, msg, **kw:
                            failures.append(str(msg.data)[:500]) if msg.node_id in proven else None)

    def on_done(environment: Any, msg: Any, **kw: Any) -> None:
        if msg.node_id not in proven:
            return
        on_report(msg.node_id, {"asrtk": msg.data})
        done.add(msg.node_id)

    master.register_message(MSG_DONE, on_done)

    log = tempfile.NamedTemporaryFile(prefix="asrtk-workers-", suffix=".log", delete=False)
    host = "127.0.0.1" if bind in ("0.0.0.0", "*", "") else bind
    import toolkit

    env_vars = dict(os.environ)  # workers import this same toolkit, installed or not
    env_vars[SECRET_ENV] = key
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
        last_hello = 0.0
        while len(proven) < n:
            # a worker registers its handlers only once Locust's connect returns: a challenge that
            # came earlier is dropped, so it is repeated (same nonce) until the worker answers
            if time.monotonic() - last_hello > 0.5:
                last_hello = time.monotonic()
                for cid in list(master.clients.keys()):
                    if cid in proven or cid in refused:
                        continue
                    challenged.setdefault(cid, secrets.token_hex(32))
                    master.send_message(MSG_HELLO, {"nonce": challenged[cid]}, client_id=cid)
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                extra = f"; {len(refused)} failed to prove the cluster secret" if refused else ""
                raise AsrtkError(f"only {len(proven)} of {n} load-generator workers connected and authenticated"
                                 f"{extra}; see {log.name}")
            gevent.sleep(0.05)
        ids = sorted(proven)[:n]
        for i, cid in enumerate(ids):
            body = json.dumps({
                "scenario": scenario.to_dict(), "base_url": plan.base_url, "headers": headers,
                "timeout_s": plan.timeout_s, "drain_s": plan.drain_s, "part": i, "parts": n}, sort_keys=True)
            master.send_message(MSG_PREPARE, {"body": body, "mac": _mac(key, "master", cid, proven[cid], body)},
                                client_id=cid)
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


def worker_main(master_host: str, master_port: int, secret: str | None = None) -> int:
    """One load-generator worker: connects to the master, proves the shared secret, runs what
    the authenticated master sends (nothing else), exits on quit."""
    from toolkit.errors import UsageError

    secret = cluster_secret(secret)
    if secret is None:
        raise UsageError(f"a worker needs the master's cluster secret: --secret or {SECRET_ENV} "
                         "(what `asrtk bench --secret` was given)")
    import locust  # noqa: F401 - gevent monkey-patching first

    import gevent
    import psutil
    from locust.env import Environment

    from toolkit.engine.requests import prepare_request_sets
    from toolkit.engine.driver import Driver, DriverPlan
    from toolkit.recorder import Recorder
    from toolkit.scenario import scenario_from_dict

    env = Environment()
    runner = env.create_worker_runner(master_host, master_port)
    me = psutil.Process()
    me.cpu_percent(None)
    st: dict[str, Any] = {"pending": [], "rec": None, "drv": None, "plan": None, "nonce": None, "hello": None}

    def payload(final: bool) -> dict:
        ivs, st["pending"] = st["pending"], []
        rec = st["rec"]
        return {"intervals": ivs, "totals": rec.snapshot() if rec is not None else None,
                "cpu_percent": me.cpu_percent(None), "final": final}

    def on_report(client_id: str, data: dict) -> None:
        if st["rec"] is not None:
            data["asrtk"] = payload(False)

    env.events.report_to_master.add_listener(on_report)

    def hello(msg: Any) -> None:
        d = msg.data if isinstance(msg.data, dict) else {}
        theirs = d.get("nonce")
        if not isinstance(theirs, str) or len(theirs) != 64:
            return  # malformed: ignored
        if st["nonce"] is None:
            st["nonce"], st["hello"] = secrets.token_hex(32), theirs
        elif st["hello"] != theirs or st["nonce"] == "used":
            return  # one challenge per connection; a repeat of it gets the same answer
        runner.send_message(MSG_PROOF, {"nonce": st["nonce"],
                                        "mac": _mac(secret, "worker", runner.client_id, theirs, st["nonce"])})

    def prepare(msg: Any) -> None:
        try:
            d = msg.data if isinstance(msg.data, dict) else {}
            body = d.get("body")
            if st["nonce"] in (None, "used") or not isinstance(body, str) or len(body) > MAX_RUN_BYTES or \
                    not _valid_mac(secret, d.get("mac"), "master", runner.client_id, st["nonce"], body):
                print("asrtk worker: ignored a run that was not signed with the cluster secret", file=sys.stderr)
                return
            st["nonce"] = "used"  # one run per connection: a replay gets nothing
            d = json.loads(body)
            scenario = scenario_from_dict(d["scenario"], source="master")
            headers = {str(k): str(v) for k, v in dict(d.get("headers") or {}).items()}
            sets, weights = prepare_request_sets(scenario, headers)
            st["plan"] = DriverPlan(
                load=scenario.load, warmup_s=scenario.warmup_s, duration_s=scenario.duration_s,
                request_sets=sets, weights=weights, seed=scenario.seed, base_url=str(d["base_url"]),
                timeout_s=float(d["timeout_s"]), drain_s=float(d["drain_s"]), share=1.0 / int(d["parts"]),
                part=int(d["part"]), parts=int(d["parts"]))
            runner.send_message(MSG_PREPARED, None)
        except Exception as exc:  # noqa: BLE001 - reported to the master as one line (no values)
            runner.send_message(MSG_FAILED, f"{type(exc).__name__}: {str(exc)[:300]}")

    def start(msg: Any) -> None:
        plan = st["plan"]
        if plan is None or st["drv"] is not None:
            return  # no authenticated run prepared, or already running
        t0 = time.perf_counter() + min(10.0, max(0.0, float((msg.data or {}).get("delay_s", 1.0))))
        rec = Recorder(plan.warmup_s, plan.duration_s)
        drv = Driver(plan, env, rec, on_intervals=lambda ivs: st["pending"].extend(ivs))
        st["rec"], st["drv"] = rec, drv
        drv.run(t0)
        runner.send_message(MSG_DONE, payload(True))

    def stop(msg: Any) -> None:
        if st["drv"] is not None:
            st["drv"].stop()

    runner.register_message(MSG_HELLO, lambda environment, msg, **kw: hello(msg))
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
    return worker_main(a.master_host, a.master_port)  # the secret comes in ASRTK_CLUSTER_SECRET


if __name__ == "__main__":
    sys.exit(main())
