"""asrtk drill's pure core on recorded and virtual timelines: nginx's log and config read as data,
nginx's passive health check modelled as nginx implements it, every promise held and broken."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from toolkit.drills import judge as J
from toolkit.drills import logs, outputs
from toolkit.drills.model import (Attempt, ClientRecord, DrillResult, DrillRun, Event, Promise, ProxyFacts,
                                  ProxyRecord, ServerFacts, Slo, exit_code)
from toolkit.generators import nginx
from toolkit.generators import spec as S

SLO = Slo(0.95, 1.0)
A, B, C = "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"
REPLICAS = {"replica-1": (A, False), "replica-2": (B, False), "replica-3": (C, True)}


def proxy_facts(**kw) -> ProxyFacts:
    base = ProxyFacts(servers=((A, False), (B, False), (C, True)), max_fails=3, fail_timeout_s=10.0,
                      next_upstream=("error", "timeout", "non_idempotent"), tries=3, connect_timeout_s=2.0,
                      read_timeout_s=5.0, next_upstream_timeout_s=9.0, limit_rps=80.0, limit_status=429)
    return replace(base, **kw)


def facts(proxy: ProxyFacts | None = None, log: bool = True, server: ServerFacts | None = None) -> J.Facts:
    return J.Facts(slo=SLO, proxy=proxy if proxy is not None else proxy_facts(), server=server, proxy_log=log)


def steady(t0: float, t1: float, rps: float = 10.0, latency: float = 0.05) -> list[ClientRecord]:
    n = int((t1 - t0) * rps)
    return [ClientRecord(t0 + i / rps, t0 + i / rps + latency, True, None, latency) for i in range(n)]


def hit(start: float, end: float, *attempts: tuple[str, int | None, float, float], status: int = 200) -> ProxyRecord:
    return ProxyRecord(start, end, status, tuple(Attempt(a, s, t0, t1) for a, s, t0, t1 in attempts))


def served(t0: float, t1: float, addr: str, rps: float = 5.0) -> list[ProxyRecord]:
    n = int((t1 - t0) * rps)
    return [hit(t0 + i / rps, t0 + i / rps + 0.05, (addr, 200, t0 + i / rps, t0 + i / rps + 0.05)) for i in range(n)]


# ----------------------------------------------------------------------------- nginx's log and config


def test_access_log_lines_become_requests_with_every_attempt_laid_out_backwards() -> None:
    epoch0 = 1_700_000_000.0
    lines = [
        f"{epoch0 + 5.500}|0.300|200|{A}, {B}|502, 200|0.100, 0.200|-|POST|/recognize\n",
        f"{epoch0 + 6.000}|0.001|429|-|-|-|1|POST|/recognize\n",
        f"{epoch0 + 7.000}|0.050|503|{A}|503|0.050|1|POST|/recognize\n",
        f"{epoch0 + 8.000}|0.010|200|{A}|200|0.010|-|GET|/healthz\n",  # outside the prefix: skipped
        "a line of another format\n",
    ]
    recs = logs.parse_access_log(lines, epoch0, uri_prefix="/recognize")
    assert len(recs) == 3
    retried = recs[0]
    assert retried.status == 200 and retried.start_s == pytest.approx(5.2)
    assert [(a.address, a.status) for a in retried.attempts] == [(A, 502), (B, 200)]
    assert retried.attempts[1].end_s == pytest.approx(5.5) and retried.attempts[1].start_s == pytest.approx(5.3)
    assert retried.attempts[0].start_s == pytest.approx(5.2) and retried.attempts[0].end_s == pytest.approx(5.3)
    assert recs[1].attempts == () and recs[1].retry_after == "1"  # answered by nginx itself (limit_req)
    assert recs[2].retry_after == "1"


def test_the_config_promises_are_read_from_what_the_generator_writes() -> None:
    spec = S.from_flags([A, B], [C], target_qps=10, capacity_rps=80, latency_max_s=1.0)
    f = logs.proxy_facts(nginx.render(spec), "asrtk.conf")
    assert f.servers == ((A, False), (B, False), (C, True))
    assert (f.max_fails, f.fail_timeout_s) == (3, 10.0)
    assert f.retries_sent_posts and f.tries == 3
    assert (f.connect_timeout_s, f.read_timeout_s, f.next_upstream_timeout_s) == (2.0, 5.0, 9.0)
    assert (f.limit_rps, f.limit_status) == (80.0, 429)
    off = logs.proxy_facts(nginx.render(spec.with_overrides(max_fails=0, retry_non_idempotent=False)))
    assert off.max_fails == 0 and not off.passive_checks and not off.retries_sent_posts


def test_nginx_defaults_apply_where_a_hand_written_config_is_silent() -> None:
    f = logs.proxy_facts("upstream u { server 10.0.0.1:80; server 10.0.0.2:80 backup; }\n"
                         "server { listen 80; location / { proxy_pass http://u; } }\n")
    assert (f.max_fails, f.fail_timeout_s, f.tries, f.read_timeout_s) == (1, 10.0, 0, 60.0)
    assert f.next_upstream == ("error", "timeout") and f.limit_rps is None
    with pytest.raises(ValueError, match="no upstream block"):
        logs.proxy_facts("server { listen 80; }")


# ----------------------------------------------------------------------------- building blocks


def test_recovery_ends_with_the_last_bad_second() -> None:
    recs = steady(0, 10) + [ClientRecord(4.2, 4.3, False, "http_502"), ClientRecord(6.5, 8.0, True, None, 1.5)]
    rows = J.seconds(recs, SLO)
    assert [r["t_s"] for r in rows if J.is_bad(r, SLO)] == [4.0, 6.0]
    assert J.recovery_s(rows, SLO, 4.1) == pytest.approx(2.9)  # end of second 6
    assert J.recovery_s(J.seconds(steady(0, 10), SLO), SLO, 4.1) == 0.0
    assert J.nearest_rank([1.0, 2.0, 3.0, 4.0], 0.95) == 4.0 and J.nearest_rank([], 0.5) is None


def test_ejection_is_the_max_fails_th_failure_and_pickup_the_first_success_after() -> None:
    att = [Attempt(A, 502, 5.0, 5.01), Attempt(A, 502, 5.3, 5.31), Attempt(A, 504, 6.0, 11.0),
           Attempt(A, 502, 7.0, 7.01), Attempt(A, 200, 17.5, 17.6)]
    assert J.ejection(att, 4.9, 3) == pytest.approx(7.01)  # by the time each failure registered
    assert J.ejection(att, 4.9, 0) is None  # passive checks off: never
    assert J.ejection(att[:2], 4.9, 3) is None
    assert J.pickup(att, 12.0) == 17.5


@pytest.mark.parametrize("tries,dead,max_fails,down,expected", [
    (3, 1, 3, 5.0, 0),  # another server is always within reach
    (3, 2, 3, 5.0, 0),  # the backup is the third try
    (2, 2, 3, 5.0, 3),  # both tries on dead primaries until each failed max_fails times: ceil(3 x 2 / 2)
    (2, 2, 3, 25.0, 5),  # ... and one more request per fail_timeout (10 s) they stay down
    (2, 2, 0, 5.0, 0),  # no passive check: nothing bounds it, no allowance is granted
])
def test_retry_allowance(tries: int, dead: int, max_fails: int, down: float, expected: int) -> None:
    got, why = J.retry_allowance(proxy_facts(tries=tries, max_fails=max_fails), dead, down)
    assert got == expected, why


# ----------------------------------------------------------------------------- kill


def kill_run(errors: list[ClientRecord] = (), attempts_on_victim: list[ProxyRecord] = (),
             inflight: int = 0, back_at: float = 15.45) -> DrillRun:
    """Killed at 4 s, ready at 10 s; nginx routes to it again from ``back_at`` (its ejection ends
    fail_timeout + 1 s after its last failure, ~15.4 s with the refused connects below)."""
    reqs = steady(0, 25) + list(errors)
    proxy = served(0, 25, B)
    proxy += [hit(3.9, 4.0 + 0.001 * i, (A, 502, 3.9, 4.0 + 0.001 * i), status=502) for i in range(inflight)]
    proxy += served(0, 3.9, A) + list(attempts_on_victim) + served(back_at, 25, A)
    ev = [Event(4.0, "kill", "replica-1"), Event(9.0, "start", "replica-1"), Event(10.0, "ready", "replica-1")]
    return DrillRun("kill", (0.0, 25.0), reqs, ev, proxy, None, REPLICAS, base_rps=10.0)


def refused(t: float) -> ProxyRecord:
    return hit(t, t + 0.003, (A, 502, t, t + 0.001), (B, 200, t + 0.001, t + 0.003))


def test_kill_holds_when_only_retried_attempts_touched_the_dead_replica() -> None:
    run = kill_run(attempts_on_victim=[refused(4.1), refused(4.2), refused(4.4)])
    res = J.judge(run, facts())
    assert res.passed is True, [p.line("kill") for p in res.promises]
    assert (res.errors, res.error_bound, res.recovery_bound_s) == (0, 0, 11.0)
    keys = {p.key: p for p in res.promises}
    assert "ejected 0.40 s after the kill" in keys["kill.ejected"].measured
    assert "routed to 5.45 s after /ready" in keys["kill.return"].measured
    late = J.judge(kill_run(attempts_on_victim=[refused(4.1), refused(4.2), refused(4.4)], back_at=17.0), facts())
    assert [p.key for p in late.broken] == ["kill.return"]  # the 3rd request after its ejection went elsewhere


def test_kill_without_post_retries_allows_the_in_flight_requests_only() -> None:
    px = proxy_facts(next_upstream=("error", "timeout"))
    errs = [ClientRecord(3.9, 4.0, False, "http_502"), ClientRecord(3.95, 4.0, False, "http_502")]
    # the two cut-off attempts are failures too: one refused connect more and nginx ejects it
    run = kill_run(errs, [refused(4.1)], inflight=2)
    res = J.judge(run, facts(px))
    assert res.error_bound == 2 and res.passed is True, [p.line("kill") for p in res.promises]
    assert "ejected 0.10 s after the kill" in {p.key: p for p in res.promises}["kill.ejected"].measured
    one_more = J.judge(kill_run(errs + [ClientRecord(6.0, 6.1, False, "http_502")], [refused(4.1)], inflight=2),
                       facts(px))
    assert [p.key for p in one_more.broken] == ["kill.errors"]


def test_a_dead_replica_nginx_keeps_trying_breaks_the_ejection_promise() -> None:
    """max_fails=0 (passive checks off): every pick of the dead server is a refused connect."""
    attempts = [refused(4.1 + 0.5 * i) for i in range(10)]
    res = J.judge(kill_run(attempts_on_victim=attempts, back_at=10.05), facts(proxy_facts(max_fails=0)))
    assert res.passed is False
    (broken,) = res.broken
    assert broken.key == "kill.ejected" and "max_fails=0" in broken.why
    assert broken.line("kill").startswith("kill: nginx stops sending to it: BROKEN: measured 10 attempts")


def test_an_attempt_during_the_ejection_breaks_it_too() -> None:
    attempts = [refused(4.1), refused(4.2), refused(4.4), refused(8.0)]
    res = J.judge(kill_run(attempts_on_victim=attempts), facts())
    assert [p.key for p in res.broken] == ["kill.ejected"]
    assert "1 during its ejection" in res.broken[0].measured


def test_a_remote_target_reports_unknown_bounds_not_guesses() -> None:
    run = kill_run()
    run.proxy, run.replicas = None, {}
    run.events = [Event(4.0, "hook", "", "kill: kubectl delete pod ..."), Event(4.5, "hook_done", "", "exit 0")]
    res = J.judge(run, J.Facts(slo=SLO))
    assert res.passed is None and res.error_bound is None and res.recovery_bound_s is None
    assert {p.key: p.held for p in res.promises} == {"kill.errors": None, "kill.recovery": None}
    assert exit_code([res]) == 0
    with_conf = J.judge(run, J.Facts(slo=SLO, proxy=proxy_facts()))  # --nginx-conf: the recovery bound is known
    assert with_conf.recovery_bound_s == 11.0 and {p.key: p.held for p in with_conf.promises}["kill.recovery"]


# ----------------------------------------------------------------------------- restart, hang


def restart_run(extra: list[ClientRecord] = ()) -> DrillRun:
    ev = []
    t = 4.0
    for name in ("replica-1", "replica-2", "replica-3"):
        ev += [Event(t, "sigterm", name), Event(t + 0.3, "exited", name), Event(t + 0.3, "start", name),
               Event(t + 1.0, "ready", name)]
        t += 3.0
    proxy = served(0, 20, A) + served(0, 20, B)
    return DrillRun("restart", (0.0, 20.0), steady(0, 20) + list(extra), ev, proxy, None, REPLICAS, 10.0)


def test_restart_holds_at_zero_errors_and_breaks_at_one() -> None:
    res = J.judge(restart_run(), facts())
    assert res.passed is True and res.errors == 0 and res.error_bound == 0
    assert [p.key for p in res.promises] == ["restart.errors", "restart.return.replica-1", "restart.return.replica-2"]
    broken = J.judge(restart_run([ClientRecord(4.1, 4.11, False, "http_503")]), facts())
    assert [p.key for p in broken.broken] == ["restart.errors"] and "http_503 1" in broken.broken[0].measured


def hang_run(stuck: list[ProxyRecord], errors: list[ClientRecord] = ()) -> DrillRun:
    proxy = served(0, 4.0, A) + served(0, 30, B) + list(stuck) + served(12.05, 30, A)
    ev = [Event(4.0, "sigstop", "replica-1"), Event(12.0, "sigcont", "replica-1")]
    reqs = steady(0, 30) + list(errors)
    return DrillRun("hang", (0.0, 30.0), reqs, ev, proxy, None, REPLICAS, 10.0)


def test_hang_with_post_retries_reroutes_what_the_frozen_replica_holds() -> None:
    stuck = [hit(4.2, 9.25, (A, 504, 4.2, 9.2), (B, 200, 9.2, 9.25)), hit(5.0, 10.05, (A, 504, 5.0, 10.0), (B, 200, 10.0, 10.05))]
    res = J.judge(hang_run(stuck), facts())
    assert res.passed is True, [p.line("hang") for p in res.promises]
    rer = {p.key: p for p in res.promises}["hang.rerouted"]
    assert "2 requests reached it: 0 failed, the slowest answered in 5.05 s" in rer.measured
    assert "after SIGCONT" in {p.key: p for p in res.promises}["hang.return"].measured


def test_hang_without_post_retries_breaks_the_error_promise() -> None:
    px = proxy_facts(next_upstream=("error", "timeout"))
    stuck = [hit(4.2, 9.2, (A, 504, 4.2, 9.2), status=504)]
    res = J.judge(hang_run(stuck, [ClientRecord(4.2, 9.2, False, "http_504")]), facts(px))
    assert {p.key for p in res.broken} == {"hang.errors", "hang.rerouted"}
    assert res.errors == 1 and res.error_bound == 0


# ----------------------------------------------------------------------------- overload, failover


def overload_run(refusal_retry_after: str | None = "1", other: list[ClientRecord] = (),
                 admitted_latency: float = 0.2, rss_growth: int = 50 * 2**20) -> DrillRun:
    reqs = steady(0, 4) + steady(4, 24, rps=50, latency=admitted_latency) + steady(24, 32)
    reqs += [ClientRecord(4 + i / 50, 4 + i / 50 + 0.002, False, "http_429", 0.002, refusal_retry_after)
             for i in range(1000)]
    reqs += list(other)
    rss = [(t, name, 200 * 2**20 + (rss_growth if 4 < t < 24 else 0)) for t in range(0, 32)
           for name in ("replica-1", "replica-2")]
    ev = [Event(4.0, "overload_start", "", "200 req/s"), Event(24.0, "overload_end")]
    return DrillRun("overload", (0.0, 32.0), reqs, ev, None, rss, REPLICAS, 10.0)


SERVER = ServerFacts(memory_budget_mb=256, max_queue=10, drain_grace_s=0, drain_timeout_s=30)


def test_overload_holds_when_the_excess_is_shed_with_retry_after() -> None:
    res = J.judge(overload_run(), facts(server=SERVER))
    assert res.passed is True, [p.line("overload") for p in res.promises]
    assert res.errors == 0 and res.recovery_bound_s == 2.0


@pytest.mark.parametrize("kwargs,key", [
    ({"refusal_retry_after": None}, "overload.shed"),
    ({"other": [ClientRecord(10.0, 15.0, False, "http_504")]}, "overload.no_other_errors"),
    ({"admitted_latency": 1.4}, "overload.admitted_slo"),
    ({"rss_growth": 500 * 2**20}, "overload.rss"),  # > 1.5 x 256 MiB
    ({"other": [ClientRecord(27.0, 27.1, False, "http_503")]}, "overload.recovery"),  # shed after it ended
])
def test_overload_breaks(kwargs: dict, key: str) -> None:
    res = J.judge(overload_run(**kwargs), facts(server=SERVER))
    assert key in {p.key for p in res.broken}, [p.line("overload") for p in res.promises]


def test_overload_rss_is_unknown_without_the_fleet() -> None:
    run = overload_run()
    run.rss = None
    res = J.judge(run, J.Facts(slo=SLO))
    assert {p.key: p.held for p in res.promises}["overload.rss"] is None and res.passed is None


def failover_run(tries_ok: bool = True) -> DrillRun:
    ev = [Event(4.0, "kill", "replica-1"), Event(4.01, "kill", "replica-2"), Event(9.0, "start", "replica-1"),
          Event(9.7, "ready", "replica-1"), Event(9.7, "start", "replica-2"), Event(10.4, "ready", "replica-2")]
    proxy = served(0, 4, A) + served(0, 4, B) + served(16, 25, A) + served(16, 25, B)
    reqs = steady(0, 25)
    for i in range(40):
        t = 4.1 + i * 0.25
        if tries_ok:
            proxy.append(hit(t, t + 0.05, (A, 502, t, t + 0.001), (B, 502, t + 0.001, t + 0.002), (C, 200, t + 0.002, t + 0.05)))
        elif i < 3:
            proxy.append(hit(t, t + 0.002, (A, 502, t, t + 0.001), (B, 502, t + 0.001, t + 0.002), status=502))
            reqs.append(ClientRecord(t, t + 0.002, False, "http_502"))
        else:
            proxy.append(hit(t, t + 0.05, (C, 200, t, t + 0.05)))
    return DrillRun("failover", (0.0, 25.0), reqs, ev, proxy, None, REPLICAS, 10.0)


def test_failover_the_backup_serves() -> None:
    res = J.judge(failover_run(), facts())
    assert res.passed is True, [p.line("failover") for p in res.promises]
    assert "20 answered by replica-3" in {p.key: p for p in res.promises}["failover.backup"].measured


def test_two_tries_cannot_reach_the_backup_past_two_dead_primaries() -> None:
    """The generator's old proxy_next_upstream_tries 2: 3 client errors, exactly what it allows."""
    px = proxy_facts(tries=2)
    res = J.judge(failover_run(tries_ok=False), facts(px))
    assert res.errors == 3 and res.error_bound == 3 and {p.key: p.held for p in res.promises}["failover.errors"]
    strict = J.judge(failover_run(tries_ok=False), facts(proxy_facts(tries=3)))
    assert "failover.errors" in {p.key for p in strict.broken}


# ----------------------------------------------------------------------------- outputs


def _summary(results: list[DrillResult], runs: list[DrillRun]) -> dict:
    return outputs.build_summary(
        asrtk_version="0", created=datetime(2026, 1, 1, tzinfo=timezone.utc), complete=True, incomplete_reason=None,
        scenario="mobile", target={"url": "http://127.0.0.1:1", "embedded": True}, capacity_rps=100.0,
        capacity_source="calibration", calibration=None, base_rps=10.0, facts=facts(server=SERVER), results=results,
        runs=runs, wall_s=12.0, exit_code=exit_code(results))


def test_outputs_carry_the_verdicts_and_render() -> None:
    runs = [kill_run(attempts_on_victim=[refused(4.1 + 0.5 * i) for i in range(10)], back_at=10.05), overload_run()]
    results = [J.judge(runs[0], facts(proxy_facts(max_fails=0))), J.judge(runs[1], facts(server=SERVER))]
    summary = _summary(results, runs)
    assert summary["schema"] == "asrtk.drill/v1" and summary["exit_code"] == 3
    assert summary["broken"] == [results[0].broken[0].line("kill")]
    doc = outputs.json_document(summary)
    assert [sorted(d) for d in doc["drills"]] == [sorted(["name", "passed", "errors", "error_bound", "recovery_s",
                                                          "recovery_bound_s", "detail", "loadgen", "host"])] * 2
    assert doc["drills"][0]["passed"] is False and doc["drills"][1]["passed"] is True
    json.dumps(summary, allow_nan=False)
    rows = outputs.timeline_rows(runs, SLO)
    assert set(rows[0]) == set(outputs.TIMELINE_COLUMNS)
    kill_second = next(r for r in rows if r["drill"] == "kill" and r["t_s"] == 4.0)
    assert kill_second["events"] == "kill replica-1"
    over = [r for r in rows if r["drill"] == "overload" and 4 <= r["t_s"] < 24]
    assert sum(r["refused"] for r in over) == 1000 and not any(r["bad"] for r in over)
    md = outputs.render_markdown(summary, rows)
    assert "## What broke" in md and "kill: nginx stops sending to it: BROKEN" in md
    page = outputs.render_html(summary, rows)
    for svg in page.split("<svg")[1:]:
        ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")  # well-formed
    assert page.count("<svg") == 2 and "kill replica-1" in page


def test_exit_code_is_3_only_when_a_promise_broke() -> None:
    held = DrillResult("kill", [Promise("k", "t", True, "", "")], 0, 0, 0.0, 1.0, "")
    unknown = DrillResult("kill", [Promise("k", "t", None, "", "")], 0, None, 0.0, None, "")
    broke = DrillResult("kill", [Promise("k", "t", False, "", "")], 1, 0, 0.0, 1.0, "")
    assert exit_code([held, unknown]) == 0 and exit_code([held, broke]) == 3


def test_a_break_measured_by_an_invalid_load_generator_is_inconclusive() -> None:
    def broke(valid: bool | None) -> DrillResult:
        lg = None if valid is None else {"valid": valid, "warnings": [] if valid else ["load generator fell behind"]}
        return DrillResult("kill", [Promise("k", "t", False, "", "")], 1, 0, 0.0, 1.0, "", loadgen=lg)

    held_late = DrillResult("hang", [Promise("h", "t", True, "", "")], 0, 0, 0.0, 1.0, "",
                            loadgen={"valid": False, "warnings": ["late"]})
    assert exit_code([broke(False)]) == 4  # the lateness may be the load generator's own
    assert exit_code([broke(False), broke(True)]) == 3  # one break measured by a valid load generator stands
    assert exit_code([broke(None)]) == 3  # not measured: judged as before
    assert exit_code([held_late]) == 0  # lateness only inflates latency: a held promise holds
    summary = _summary([broke(False)], [])
    assert summary["exit_code"] == 4
    md = outputs.render_markdown(summary, [])
    assert "**Load generator INVALID:** load generator fell behind" in md
    assert "Load generator INVALID:</b> load generator fell behind" in outputs.render_html(summary, [])


def test_a_break_on_a_disturbed_host_is_inconclusive() -> None:
    host = {"disturbed": True, "warnings": ["this host was busy with other work: 0.40 CPU cores"]}
    broke = DrillResult("kill", [Promise("k", "t", False, "", "")], 1, 0, 0.0, 1.0, "", host=host)
    quiet = DrillResult("kill", [Promise("k", "t", False, "", "")], 1, 0, 0.0, 1.0, "", host={"disturbed": False})
    assert exit_code([broke]) == 4 and exit_code([broke, quiet]) == 3
    summary = _summary([broke], [])
    assert "**DISTURBED host:** this host was busy" in outputs.render_markdown(summary, [])
    assert outputs.json_document(summary)["drills"][0]["host"]["disturbed"] is True
