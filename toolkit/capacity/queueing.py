"""Queueing models for the latency overlay of a plan: M/M/c (Erlang C) and G/G/c (Allen-Cunneen).

All functions are pure. Rates are per second, times in seconds. ``c`` servers, arrival rate
``lam``, service rate per server ``mu``; offered load ``a = lam / mu`` Erlangs, utilisation
``rho = a / c`` (< 1 for a stable queue).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def erlang_b(c: int, a: float) -> float:
    """Blocking probability of M/M/c/c, by the numerically stable recursion."""
    if c < 0 or a < 0:
        raise ValueError(f"erlang_b needs c >= 0 and a >= 0, got c={c}, a={a}")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c (Erlang C). 1.0 when the queue is unstable."""
    if c < 1:
        raise ValueError(f"erlang_c needs c >= 1 server, got {c}")
    if a >= c:
        return 1.0
    b = erlang_b(c, a)
    return c * b / (c - a * (1.0 - b))


def mmc_mean_wait(c: int, lam: float, mu: float) -> float:
    """Mean time in queue Wq of M/M/c; inf when lam >= c * mu."""
    if lam >= c * mu:
        return math.inf
    return erlang_c(c, lam / mu) / (c * mu - lam)


def mmc_wait_quantile(q: float, c: int, lam: float, mu: float) -> float:
    """q-quantile of the waiting time in M/M/c: P(W > t) = C * exp(-(c mu - lam) t)."""
    if lam >= c * mu:
        return math.inf
    pw = erlang_c(c, lam / mu)
    if 1.0 - q >= pw:
        return 0.0
    return math.log(pw / (1.0 - q)) / (c * mu - lam)


def mmc_response_tail(t: float, c: int, lam: float, mu: float) -> float:
    """P(R > t) for the response time R = W + S of M/M/c (FCFS)."""
    if lam >= c * mu:
        return 1.0
    pw = erlang_c(c, lam / mu)
    theta = c * mu - lam
    if abs(theta - mu) < 1e-12 * mu:
        both = (1.0 + mu * t) * math.exp(-mu * t)  # S + Exp(mu) is Erlang-2
    else:
        both = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
    return (1.0 - pw) * math.exp(-mu * t) + pw * both


def mmc_response_quantile(q: float, c: int, lam: float, mu: float) -> float:
    """q-quantile of the response time of M/M/c, by bisection on :func:`mmc_response_tail`."""
    if lam >= c * mu:
        return math.inf
    lo, hi = 0.0, 1.0 / mu
    while mmc_response_tail(hi, c, lam, mu) > 1.0 - q:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mmc_response_tail(mid, c, lam, mu) > 1.0 - q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def allen_cunneen_wait(c: int, lam: float, mu: float, ca2: float, cs2: float) -> float:
    """Mean queue wait of G/G/c: Wq(M/M/c) * (ca^2 + cs^2) / 2 (Allen-Cunneen approximation)."""
    return mmc_mean_wait(c, lam, mu) * (ca2 + cs2) / 2.0


@dataclass(frozen=True)
class LatencyPrediction:
    """Predicted response-time figures at one arrival rate; ``model`` names the approximation."""

    rate_rps: float
    utilization: float
    p_wait: float
    mean_wait_s: float
    p50_s: float
    p95_s: float
    p99_s: float
    model: str = "erlang-c + allen-cunneen"

    def quantile_s(self, q: float) -> float:
        return {0.5: self.p50_s, 0.95: self.p95_s, 0.99: self.p99_s}.get(q, self.p95_s)


def ggc_response_percentiles(
    c: int,
    lam: float,
    mu: float,
    service_mean_s: float,
    cs2: float,
    ca2: float = 1.0,
    quantiles: tuple[float, ...] = (0.5, 0.95, 0.99),
    samples: int = 200_000,
    seed: int = 0,
) -> tuple[float, float, float, list[float]]:
    """Response-time quantiles of G/G/c: (P(wait), mean wait, utilisation, [quantiles]).

    The wait is 0 with probability 1 - C (Erlang C) and otherwise exponential with the
    Allen-Cunneen mean (ca^2 + cs^2)/2 / (c mu - lam); the service time is a gamma variate with
    the measured mean and squared coefficient of variation cs^2. The sum's quantiles are taken
    from a fixed-seed sample, so the result is deterministic.
    """
    if c < 1 or mu <= 0 or service_mean_s <= 0:
        raise ValueError(f"need c >= 1, mu > 0 and a positive service time, got c={c}, mu={mu}")
    rho = lam / (c * mu)
    if rho >= 1.0:
        return 1.0, math.inf, rho, [math.inf for _ in quantiles]
    pw = erlang_c(c, lam / mu)
    cond_wait = (ca2 + cs2) / 2.0 / (c * mu - lam)
    rng = np.random.default_rng(seed)
    if cs2 <= 1e-6:
        service = np.full(samples, service_mean_s)
    else:
        shape = 1.0 / cs2
        service = rng.gamma(shape, service_mean_s / shape, samples)
    waits = np.where(rng.random(samples) < pw, rng.exponential(cond_wait, samples), 0.0)
    total = service + waits
    qs = [float(v) for v in np.quantile(total, list(quantiles))]
    return pw, pw * cond_wait, rho, qs


def predict_latency(
    c: int, lam: float, mu: float, service_mean_s: float, cs2: float, ca2: float = 1.0
) -> LatencyPrediction:
    pw, wq, rho, (p50, p95, p99) = ggc_response_percentiles(c, lam, mu, service_mean_s, cs2, ca2)
    return LatencyPrediction(lam, rho, pw, wq, p50, p95, p99)


def gamma_cv2_from_ratio(p95_over_mean: float) -> float:
    """cs^2 of a gamma distribution whose p95 / mean equals the given ratio (Wilson-Hilferty).

    Used when only percentiles of the service time are known, not its variance.
    """
    if p95_over_mean <= 1.0:
        return 0.0
    z = 1.6448536269514722

    def ratio(k: float) -> float:
        return (1.0 - 1.0 / (9.0 * k) + z * math.sqrt(1.0 / (9.0 * k))) ** 3

    # shape k: large k => ratio -> 1; Wilson-Hilferty is only monotonic for k >= ~0.25 (cs^2 <= 4).
    lo, hi = 0.25, 1e6
    if ratio(lo) < p95_over_mean:
        return 1.0 / lo
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if ratio(mid) > p95_over_mean:
            lo = mid
        else:
            hi = mid
    return 1.0 / math.sqrt(lo * hi)
