"""When requests start: open-loop arrival times, closed-loop user counts. Pure.

Times are seconds from the start of the run (warm-up included). Randomness comes from an
injected :class:`random.Random`; the clock and the sleep used for pacing are injected too,
so the whole schedule is testable without sleeping.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def _stage_bounds(stages: Iterable[Any]) -> list[tuple[float, float, Any]]:
    bounds, t = [], 0.0
    for st in stages:
        bounds.append((t, t + float(st.duration_s), st))
        t += float(st.duration_s)
    return bounds


def _stage_value(load: Any, t_s: float, attr: str) -> float:
    """Stage value of ``attr`` ('rate' or 'users') at ``t_s``: ramps are linear from the
    previous stage's value (0 before the first); past the last stage the last value holds."""
    bounds = _stage_bounds(load.stages)
    prev = 0.0
    for start, end, st in bounds:
        value = float(getattr(st, attr) or 0.0)
        if t_s < end:
            if getattr(st, "ramp", False) and end > start:
                frac = (t_s - start) / (end - start)
                return prev + (value - prev) * max(0.0, min(1.0, frac))
            return value
        prev = value
    return prev


def base_rate_at(load: Any, t_s: float) -> float:
    """Offered rate (req/s) at ``t_s`` from the stages, before burst modulation."""
    return _stage_value(load, t_s, "rate")


def burst_multiplier(load: Any, t_s: float) -> float:
    """Factor applied to the stage rate by ``arrival: bursty``; the period's mean stays 1
    whenever ``burst_factor * burst_on_fraction <= 1`` (else the off phase is silent)."""
    if getattr(load, "arrival", "poisson") != "bursty":
        return 1.0
    factor = float(load.burst_factor)
    on = float(load.burst_on_fraction)
    period = float(load.burst_period_s)
    if period <= 0 or on <= 0:
        return 1.0
    if on >= 1.0:
        return factor
    if (t_s % period) < on * period:
        return factor
    return max(0.0, (1.0 - on * factor) / (1.0 - on))


def rate_at(load: Any, t_s: float) -> float:
    """Instantaneous offered rate (req/s) at ``t_s``, bursts included."""
    return base_rate_at(load, t_s) * burst_multiplier(load, t_s)


def max_rate(load: Any) -> float:
    """An upper bound of :func:`rate_at` over the whole schedule (for thinning)."""
    peak = max((float(st.rate or 0.0) for st in load.stages), default=0.0)
    bound = 1.0
    if getattr(load, "arrival", "poisson") == "bursty":
        on = float(load.burst_on_fraction)
        bound = max(float(load.burst_factor), (1.0 - on * float(load.burst_factor)) / (1.0 - on) if on < 1 else 0.0)
    return peak * max(bound, 1.0)


def arrival_times(load: Any, horizon_s: float, rng: random.Random, share: float = 1.0) -> Iterator[float]:
    """Intended start times in ``[0, horizon_s)``, ascending.

    ``poisson`` and ``bursty``: a non-homogeneous Poisson process (thinning against the
    peak rate). ``uniform``: evenly spaced at the local rate. ``share`` scales the rate
    (one worker's part of a distributed run: independent Poisson streams add up).
    """
    lam_max = max_rate(load) * share
    if lam_max <= 0 or horizon_s <= 0:
        return
    if getattr(load, "arrival", "poisson") == "uniform":
        t = 0.0
        while t < horizon_s:
            lam = rate_at(load, t) * share
            if lam <= 0:
                t += 0.01
                continue
            yield t
            t += 1.0 / lam
        return
    t = 0.0
    while True:
        t += rng.expovariate(lam_max)
        if t >= horizon_s:
            return
        if rng.random() * lam_max <= rate_at(load, t) * share:
            yield t


def users_at(load: Any, t_s: float) -> int:
    """Closed-loop user count at ``t_s`` (ramps rounded to the nearest user)."""
    return int(round(_stage_value(load, t_s, "users")))


def split_users(total: int, parts: int, index: int) -> int:
    """Users of part ``index`` when ``total`` users are spread over ``parts`` processes."""
    return total // parts + (1 if index < total % parts else 0)


def pace(
    times: Iterable[float],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Iterator[tuple[float, float]]:
    """Wait for each intended time, then yield ``(intended_s, lag_s)``.

    Never skips an arrival: when the caller falls behind, the arrival is yielded at once
    and its lag (how late it is) says so. ``clock`` returns seconds since run start.
    """
    for t in times:
        now = clock()
        if t > now:
            sleep(t - now)
            now = clock()
        yield t, max(0.0, now - t)


def expected_count(load: Any, horizon_s: float, step_s: float = 0.01) -> float:
    """Expected number of arrivals in ``[0, horizon_s)`` (integral of the rate)."""
    n = max(1, int(math.ceil(horizon_s / step_s)))
    dt = horizon_s / n
    return sum(rate_at(load, (i + 0.5) * dt) for i in range(n)) * dt
