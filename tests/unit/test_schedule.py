"""Arrival schedules and pacing, with an injected RNG and a fake clock (no sleeping)."""

from __future__ import annotations

import random
import statistics

import pytest

from toolkit.engine import schedule
from toolkit.scenario import LoadSpec, Stage


def _open(*stages: Stage, **kw) -> LoadSpec:
    return LoadSpec(mode="open", stages=tuple(stages), **kw)


def test_poisson_count_and_gaps_match_the_rate() -> None:
    load = _open(Stage(duration_s=200, rate=50))
    times = list(schedule.arrival_times(load, 200, random.Random(1)))
    assert abs(len(times) - 10_000) < 4 * 100  # Poisson: sd = sqrt(10000)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert statistics.mean(gaps) == pytest.approx(1 / 50, rel=0.05)
    # exponential gaps: coefficient of variation 1 (uniform spacing would give 0)
    assert statistics.pstdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.05)
    assert times == sorted(times) and times[0] >= 0 and times[-1] < 200


def test_same_seed_same_schedule_other_seed_differs() -> None:
    load = _open(Stage(duration_s=10, rate=20))
    a = list(schedule.arrival_times(load, 10, random.Random(7)))
    b = list(schedule.arrival_times(load, 10, random.Random(7)))
    c = list(schedule.arrival_times(load, 10, random.Random(8)))
    assert a == b and a != c


def test_uniform_arrivals_are_evenly_spaced() -> None:
    load = _open(Stage(duration_s=2, rate=10), arrival="uniform")
    times = list(schedule.arrival_times(load, 2, random.Random(0)))
    assert times == pytest.approx([i / 10 for i in range(20)])


def test_stages_and_ramp_shape_the_rate() -> None:
    load = _open(Stage(duration_s=10, rate=10), Stage(duration_s=10, rate=30, ramp=True),
                 Stage(duration_s=10, rate=5))
    assert schedule.rate_at(load, 5) == 10
    assert schedule.rate_at(load, 15) == pytest.approx(20)  # halfway up the ramp
    assert schedule.rate_at(load, 25) == 5
    assert schedule.rate_at(load, 99) == 5  # the last stage holds
    times = list(schedule.arrival_times(load, 30, random.Random(3)))
    first = sum(1 for t in times if t < 10)
    ramp = sum(1 for t in times if 10 <= t < 20)
    last = sum(1 for t in times if t >= 20)
    assert abs(first - 100) < 40 and abs(ramp - 200) < 55 and abs(last - 50) < 30
    assert schedule.expected_count(load, 30) == pytest.approx(100 + 200 + 50, rel=0.01)


def test_bursty_keeps_the_mean_and_concentrates_arrivals() -> None:
    load = _open(Stage(duration_s=1000, rate=10), arrival="bursty", burst_factor=4.0,
                 burst_period_s=10.0, burst_on_fraction=0.2)
    assert schedule.rate_at(load, 1) == pytest.approx(40)
    assert schedule.rate_at(load, 5) == pytest.approx(10 * (1 - 0.8) / 0.8)
    times = list(schedule.arrival_times(load, 1000, random.Random(5)))
    assert len(times) == pytest.approx(10_000, rel=0.05)
    in_burst = sum(1 for t in times if t % 10 < 2)
    assert in_burst / len(times) == pytest.approx(0.8, abs=0.02)


def test_share_splits_the_rate_between_processes() -> None:
    load = _open(Stage(duration_s=100, rate=40))
    parts = [list(schedule.arrival_times(load, 100, random.Random(i), share=0.5)) for i in range(2)]
    assert sum(map(len, parts)) == pytest.approx(4000, rel=0.06)


def test_users_at_and_split_users() -> None:
    load = LoadSpec(mode="closed", stages=(Stage(duration_s=10, users=4), Stage(duration_s=10, users=8, ramp=True)))
    assert schedule.users_at(load, 1) == 4
    assert schedule.users_at(load, 15) == 6
    assert schedule.users_at(load, 50) == 8
    assert [schedule.split_users(5, 2, i) for i in range(2)] == [3, 2]
    assert sum(schedule.split_users(7, 3, i) for i in range(3)) == 7


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, dt: float) -> None:
        self.slept.append(dt)
        self.now += dt


def test_pace_waits_for_each_intended_time() -> None:
    c = FakeClock()
    out = list(schedule.pace([0.5, 1.0, 1.25], c.clock, c.sleep))
    assert out == [(0.5, 0.0), (1.0, 0.0), (1.25, 0.0)]
    assert c.slept == pytest.approx([0.5, 0.5, 0.25])


def test_pace_never_drops_a_late_arrival_and_reports_its_lag() -> None:
    c = FakeClock()
    got = []
    for t, lag in schedule.pace([0.1, 0.2, 0.3, 2.0], c.clock, c.sleep):
        got.append((t, lag))
        if t == 0.1:
            c.now = 1.0  # the caller was busy for 0.9 s
    assert [t for t, _ in got] == [0.1, 0.2, 0.3, 2.0]
    assert got[1][1] == pytest.approx(0.8) and got[2][1] == pytest.approx(0.7) and got[3][1] == 0.0
