"""The peak search as a pure state machine, fed by simulated targets (no clock, no network)."""

from __future__ import annotations

import math

import pytest

from toolkit.capacity.sweep import (
    StepResult,
    SweepPolicy,
    SweepSearch,
    interpolate_quantile,
    judge,
    quantile_rank_interval,
    required_requests,
)


def mm1_target(capacity_rps: float, service_s: float = 0.1):
    """Open-loop M/M/1-like target: p95 = ln(20) / (mu - lambda); saturates at capacity."""

    def run(load: float, duration_s: float) -> StepResult:
        achieved = min(load, capacity_rps)
        if load >= capacity_rps:
            lat = {0.5: 30.0, 0.95: 60.0, 0.99: 90.0}
        else:
            rate = 1.0 / service_s - load * (1.0 / service_s) / capacity_rps
            lat = {q: -math.log(1 - q) / rate for q in (0.5, 0.9, 0.95, 0.99)}
        return StepResult(load, achieved, int(achieved * duration_s), 0.0, duration_s, lat)

    return run


def drive(search: SweepSearch, target, limit: int = 50, disturbed=None) -> list:
    """Run the search to the end; ``disturbed(plan, plans_before)`` marks steps measured on a busy host."""
    import dataclasses

    plans: list = []
    for _ in range(limit):
        plan = search.next_step()
        if plan is None:
            return plans
        res = target(plan.load, plan.duration_s)
        if disturbed is not None and disturbed(plan, plans):
            res = dataclasses.replace(res, disturbed=True)
        plans.append(plan)
        search.record(res)
    raise AssertionError("search did not terminate")


def test_required_requests_puts_twenty_in_the_tail() -> None:
    assert required_requests(0.95) == 400
    assert required_requests(0.99) == 2000
    assert required_requests(0.5) == 40


def test_brackets_then_bisects_to_the_knee() -> None:
    # p95 <= 1 s needs mu - lambda >= ln 20 = 3.0 -> lambda <= 10 * (1 - 0.2996) = 7.0 rps
    policy = SweepPolicy(mode="rate", slo_latency_s=1.0, start=1.0, step_duration_s=10.0, tolerance=0.05)
    search = SweepSearch(policy)
    plans = drive(search, mm1_target(10.0))
    phases = [p.phase for p in plans]
    assert phases[:4] == ["bracket"] * 4  # 1, 2, 4, 8
    assert "bisect" in phases
    out = search.outcome()
    assert out.status == "converged"
    knee = 10.0 * (1 - math.log(20) / 10.0)
    lo, hi = out.knee_load
    assert lo <= knee <= hi
    assert (hi - lo) / lo <= 0.05
    assert out.max_rps_at_slo == lo
    assert out.ci_rps[0] < out.max_rps_at_slo <= out.ci_rps[1]
    # then the curve is filled in below the knee, where plans operate, without moving the answer
    fills = [p for p in plans if p.phase == "fill"]
    assert [p.load for p in fills] == pytest.approx([0.5 * lo, 0.7 * lo])
    assert plans[-2:] == fills and search.done and search.next_step() is None
    assert search.outcome() == out


def test_step_length_follows_the_judged_percentile() -> None:
    policy = SweepPolicy(mode="rate", slo_latency_s=1.0, start=50.0, step_duration_s=2.0,
                         max_step_duration_s=100.0, slo_percentile=0.99)
    plan = SweepSearch(policy).next_step()
    assert plan is not None
    assert plan.duration_s == pytest.approx(2000 / 50.0)  # 2000 requests for p99 at 50 rps
    capped = SweepSearch(SweepPolicy(mode="rate", slo_latency_s=1.0, start=1.0, step_duration_s=5.0)).next_step()
    assert capped is not None and capped.duration_s == 15.0  # 3x --step-duration at most


def test_noisy_verdict_is_repeated_longer_then_decided() -> None:
    policy = SweepPolicy(mode="rate", slo_latency_s=1.0, start=4.0, step_duration_s=5.0)
    search = SweepSearch(policy)
    plan = search.next_step()
    assert plan is not None
    # p95 0.98 s with few requests: the CI straddles the 1 s SLO
    lat = {0.5: 0.4, 0.9: 0.8, 0.95: 0.98, 0.99: 1.5}
    j = search.record(StepResult(plan.load, 4.0, 60, 0.0, 15.0, lat))
    assert j.verdict == "noisy"
    again = search.next_step()
    assert again is not None and again.phase == "repeat" and again.load == plan.load
    assert again.duration_s > plan.duration_s
    j2 = search.record(StepResult(again.load, 4.0, 120, 0.0, again.duration_s, lat))
    assert j2.verdict == "noisy"
    # no third run: decided on the point estimate (0.98 <= 1.0 passes)
    assert search.records[-1].final == "pass"
    nxt = search.next_step()
    assert nxt is not None and nxt.phase == "bracket" and nxt.load == 8.0


def test_slo_unreachable_descends_then_gives_up() -> None:
    policy = SweepPolicy(mode="rate", slo_latency_s=0.01, start=8.0, step_duration_s=5.0, min_load=1.0)
    search = SweepSearch(policy)
    plans = drive(search, mm1_target(10.0))
    assert [p.load for p in plans] == [8.0, 4.0, 2.0, 1.0]
    out = search.outcome()
    assert out.status == "slo_unreachable"
    assert out.max_rps_at_slo is None
    assert "every load" in out.note


def test_not_bracketed_reports_a_lower_bound() -> None:
    policy = SweepPolicy(mode="rate", slo_latency_s=5.0, start=1.0, step_duration_s=5.0, max_load=6.0)
    search = SweepSearch(policy)
    plans = drive(search, mm1_target(100.0))
    assert [p.load for p in plans] == pytest.approx([1.0, 2.0, 4.0, 6.0, 3.0, 4.2])
    assert [p.phase for p in plans[-2:]] == ["fill", "fill"]
    assert plans[-1].duration_s == 2 * policy.step_cap_s
    out = search.outcome()
    assert out.status == "not_bracketed"
    assert out.max_rps_at_slo == 6.0
    assert out.ci_rps[1] is None
    assert "at least" in out.note


def test_errors_and_saturation_fail_a_step() -> None:
    policy = SweepPolicy(mode="rate", slo_latency_s=1.0)
    lat = {0.5: 0.1, 0.95: 0.2}
    assert judge(policy, StepResult(10, 10, 500, 0.05, 50, lat)).verdict == "fail"
    sat = judge(policy, StepResult(10, 7, 350, 0.0, 50, lat))
    assert sat.verdict == "fail" and "cannot keep up" in sat.reason
    # Poisson arrivals realised fewer than nominal: judged against what was really offered
    assert judge(policy, StepResult(10, 8.6, 430, 0.0, 50, lat, offered_rps=8.7)).verdict == "pass"
    assert judge(policy, StepResult(10, 0, 0, 1.0, 50, lat)).verdict == "fail"


def test_users_mode_stops_when_throughput_plateaus() -> None:
    def closed(users: float, duration_s: float) -> StepResult:
        tput = min(users / 0.5, 8.0)  # 4 users saturate an 8 rps server
        lat = users / tput
        return StepResult(users, tput, int(tput * duration_s), 0.0, duration_s,
                          {0.5: lat, 0.95: 1.2 * lat, 0.99: 1.3 * lat}, concurrency=users)

    policy = SweepPolicy(mode="users", slo_latency_s=100.0, start=1, step_duration_s=5.0)
    search = SweepSearch(policy)
    plans = drive(search, closed)
    assert all(float(p.load).is_integer() for p in plans)
    out = search.outcome()
    assert out.max_rps_at_slo == pytest.approx(8.0)
    assert any(r.judgement.reason == "throughput stopped growing" for r in search.records)


def test_quantile_helpers() -> None:
    lo, hi = quantile_rank_interval(0.95, 400)
    assert lo < 0.95 < hi and hi - lo == pytest.approx(2 * 1.96 * math.sqrt(0.95 * 0.05 / 400), rel=1e-3)
    lat = {0.5: 1.0, 0.9: 2.0, 0.99: 4.0}
    assert interpolate_quantile(lat, 0.9) == 2.0
    assert 2.0 < interpolate_quantile(lat, 0.95) < 4.0
    assert interpolate_quantile(lat, 0.1) == 1.0  # clamped, never extrapolated


def test_record_without_pending_step_is_an_error() -> None:
    search = SweepSearch(SweepPolicy(mode="rate", slo_latency_s=1.0))
    with pytest.raises(RuntimeError):
        search.record(StepResult(1, 1, 10, 0.0, 10, {0.95: 0.1}))


def test_policy_validates_itself() -> None:
    with pytest.raises(ValueError, match="growth"):
        SweepPolicy(mode="rate", slo_latency_s=1.0, growth=1.0)
    with pytest.raises(ValueError, match="mode"):
        SweepPolicy(mode="qps", slo_latency_s=1.0)  # type: ignore[arg-type]


def test_step_result_from_a_result_summary() -> None:
    from toolkit.capacity.capacityfile import step_result_from_summary, validate_capacity

    summary = {"load": {"offered_rps": 9.5}, "throughput": {"rps": 9.0}, "duration_s": 20.0,
               "requests": {"total": 190, "ok": 180, "errors": 10, "error_rate": 10 / 190},
               "latency_s": {"mean": 0.2, "p50": 0.15, "p90": 0.3, "p95": 0.4, "p99": 0.6, "p999": None}}
    r = step_result_from_summary(summary, 10.0, "rate")
    assert r.offered_rps == 9.5 and r.achieved_rps == 9.0 and r.requests == 180
    assert r.latency_s == {0.5: 0.15, 0.9: 0.3, 0.95: 0.4, 0.99: 0.6}
    assert r.concurrency == pytest.approx(9.0 * 0.2)  # Little's law
    assert step_result_from_summary(summary, 4, "users").concurrency == 4
    assert "missing key 'steps'" in validate_capacity({"schema": "asrtk.capacity/v1"})
    assert validate_capacity([]) == ["not a JSON object"]


def test_a_disturbed_step_is_measured_again_and_does_not_count() -> None:
    import dataclasses

    policy = SweepPolicy(mode="rate", slo_latency_s=1.0, start=1.0, step_duration_s=10.0, tolerance=0.05)
    search = SweepSearch(policy)
    target = mm1_target(10.0)
    first = search.next_step()
    assert first is not None
    # measured while the host was busy: the (inflated) result is kept but not used
    slow = dataclasses.replace(target(first.load, first.duration_s), latency_s={0.5: 3.0, 0.95: 9.0, 0.99: 12.0},
                               disturbed=True)
    search.record(slow)
    assert search.records[-1].final == "disturbed"
    again = search.next_step()
    assert again is not None and again.phase == "repeat" and again.load == first.load
    assert again.duration_s == first.duration_s
    # disturbed again: no third run, the second one decides (bounded)
    search.record(dataclasses.replace(target(again.load, again.duration_s), disturbed=True))
    assert search.records[-1].final == "pass"
    nxt = search.next_step()
    assert nxt is not None and nxt.phase == "bracket" and nxt.load == 2.0
    # the disturbed run never became the SLO failure that would have ended the bracket
    assert search.hi is None and search.lo == 1.0


def test_disturbed_twice_the_quieter_measurement_counts() -> None:
    import dataclasses

    policy = SweepPolicy(mode="rate", slo_latency_s=1.0, start=1.0, step_duration_s=10.0, tolerance=0.05)
    target = mm1_target(10.0)
    for first_cores, second_cores, counts in ((0.15, 0.6, 0), (0.6, 0.15, 1)):
        search = SweepSearch(policy)
        plan = search.next_step()
        assert plan is not None
        fast = dataclasses.replace(target(plan.load, plan.duration_s), disturbed=True, interference_cores=first_cores)
        search.record(fast)
        again = search.next_step()
        assert again is not None and again.phase == "repeat"
        # the second run stalled badly (an SLO failure on its own) while the host was busier
        stalled = dataclasses.replace(target(again.load, again.duration_s), latency_s={0.5: 3.0, 0.95: 9.0, 0.99: 12.0},
                                      disturbed=True, interference_cores=second_cores)
        j = search.record(stalled)
        finals = [r.final for r in search.records]
        assert finals.count("disturbed") == 1 and len(finals) == 2
        assert search.records[counts].final == ("pass" if counts == 0 else "fail")
        assert j.verdict == search.records[counts].judgement.verdict
        nxt = search.next_step()
        assert nxt is not None
        # the counting measurement decides where the search goes next
        assert (nxt.phase, nxt.load) == (("bracket", 2.0) if counts == 0 else ("descend", 0.5))


def test_a_disturbed_fill_step_is_refilled() -> None:
    policy = SweepPolicy(mode="rate", slo_latency_s=1.0, start=1.0, step_duration_s=10.0, tolerance=0.05)
    search = SweepSearch(policy)
    plans = drive(search, mm1_target(10.0),
                  disturbed=lambda plan, before: plan.phase == "fill" and not any(p.phase == "fill" for p in before))
    fills_seen = [p for p in plans if p.phase == "fill"]
    assert len(fills_seen) == 3  # 0.5 (disturbed), 0.5 again, 0.7
    assert fills_seen[0].load == fills_seen[1].load and all(p.phase == "fill" for p in fills_seen)
    assert [r.final for r in search.records if r.plan.phase == "fill"] == ["disturbed", "pass", "pass"]


def test_disturbed_re_measurements_do_not_use_up_the_step_budget() -> None:
    policy = SweepPolicy(mode="rate", slo_latency_s=1.0, start=1.0, step_duration_s=10.0, max_steps=3, fill=())
    search = SweepSearch(policy)
    # every first measurement of a load is disturbed, every re-measurement quiet
    plans = drive(search, mm1_target(100.0), disturbed=lambda plan, before: plan.phase != "repeat")
    assert [p.load for p in plans] == [1.0, 1.0, 2.0, 2.0, 4.0, 4.0]
    assert sum(r.final != "disturbed" for r in search.records) == 3
    assert search.outcome().status == "max_steps"
