"""Confidence intervals for what a gate compares, from the runs' own data.

* A latency percentile: the distribution-free interval of a quantile from order statistics.
  Of ``n`` latencies the ``q``-quantile lies between the values of ranks
  ``n·q ∓ z·sqrt(n·q·(1-q))`` with confidence ``confidence`` (normal approximation of the
  binomial); the ranks are read off the run's exact HDR histogram. Its standard error on a log
  scale is half that interval's log width over ``z``. With 3 or more runs on a side the spread of
  the runs' own percentiles (between-run noise: a shared machine drifts) is estimated too and
  the larger of the two errors is used.
* CPU per request: a ratio estimator (CPU seconds / successful requests) over 10-second blocks
  of the run's per-second samples; the blocks' spread gives its error. (Process CPU times tick
  at 10 ms: per-second samples of a light target are quantised by several percent, and a
  10-second block brings that under 2% where a 5-second one left ~4% on the test VM.)
* The change between baseline and current is the log ratio, its error the two sides' errors in
  quadrature; the interval is turned back into a relative change. Figures where higher is better
  (throughput) are signed so that a positive change is always a regression.

Nothing here reads files or clocks: histograms and samples in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

# 3 significant digits: two HDR values closer than this are the same bucket
HDR_RESOLUTION = 1e-3


def z_of(confidence: float) -> float:
    """Two-sided normal quantile: 0.95 -> 1.96."""
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


@dataclass(frozen=True)
class Estimate:
    """A figure with the standard error of its logarithm (None: no error could be estimated)."""

    value: float | None
    log_se: float | None
    n: int = 0
    runs: int = 1

    def interval(self, z: float) -> tuple[float, float] | None:
        if self.value is None or self.log_se is None or self.value <= 0:
            return None
        return (self.value * math.exp(-z * self.log_se), self.value * math.exp(z * self.log_se))


def quantile_estimate(hist: Any, q: float, z: float) -> Estimate:
    """The ``q``-quantile (0..1) of an HDR histogram of microseconds, in seconds, with its log error."""
    n = int(hist.get_total_count()) if hist is not None else 0
    if n == 0:
        return Estimate(None, None, 0)
    x = hist.get_value_at_percentile(q * 100.0) / 1e6
    half = z * math.sqrt(n * q * (1.0 - q))
    lo_rank, hi_rank = max(1.0, n * q - half), min(float(n), n * q + half + 1.0)
    lo = hist.get_value_at_percentile(100.0 * lo_rank / n) / 1e6
    hi = hist.get_value_at_percentile(100.0 * hi_rank / n) / 1e6
    if x <= 0 or lo <= 0:
        return Estimate(x, None, n)
    se = max((math.log(hi) - math.log(lo)) / (2.0 * z), HDR_RESOLUTION / 2.0)
    return Estimate(x, se, n)


def between_runs_log_se(values: Sequence[float | None]) -> float | None:
    """Standard error of the mean log figure from the runs' own figures (3 runs or more)."""
    logs = [math.log(v) for v in values if v is not None and v > 0]
    k = len(logs)
    if k < 3:
        return None
    mean = sum(logs) / k
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (k - 1))
    return sd / math.sqrt(k)


def pooled(sampling: Estimate, per_run: Sequence[float | None]) -> Estimate:
    """A side's estimate from its pooled data, its error widened by between-run noise when known."""
    between = between_runs_log_se(per_run)
    se = sampling.log_se
    if between is not None:
        se = max(se or 0.0, between)
    return Estimate(sampling.value, se, sampling.n, max(1, len(per_run)))


def ratio_estimate(numerators: Sequence[float], denominators: Sequence[float], block: int = 10) -> Estimate:
    """sum(num)/sum(den) with its log error from blocks of ``block`` samples (None with < 3 blocks)."""
    pairs = [(a, b) for a, b in zip(numerators, denominators) if a is not None and b is not None]
    total_n, total_d = sum(a for a, _ in pairs), sum(b for _, b in pairs)
    if total_d <= 0 or total_n <= 0:
        return Estimate(None, None, int(total_d))
    value = total_n / total_d
    blocks = [pairs[i:i + block] for i in range(0, len(pairs) - block + 1, block)]
    ratios, weights = [], []
    for b in blocks:
        d = sum(x for _, x in b)
        if d > 0:
            ratios.append(sum(x for x, _ in b) / d)
            weights.append(d)
    if len(ratios) < 3:
        return Estimate(value, None, int(total_d))
    # weighted variance of the block ratios around the overall ratio, for the mean of len(blocks)
    w = sum(weights)
    var = sum(wi * (r - value) ** 2 for r, wi in zip(ratios, weights)) / w * len(ratios) / (len(ratios) - 1)
    se = math.sqrt(var / len(ratios)) / value
    return Estimate(value, max(se, HDR_RESOLUTION / 2.0), int(total_d))


def change(current: Estimate, baseline: Estimate, z: float,
           higher_is_worse: bool = True) -> tuple[float | None, tuple[float, float] | None]:
    """Relative change (positive = worse) and its interval, or (change, None) without errors."""
    if current.value is None or baseline.value is None or current.value <= 0 or baseline.value <= 0:
        return None, None
    d = math.log(current.value / baseline.value)
    if not higher_is_worse:
        d = -d
    if current.log_se is None or baseline.log_se is None:
        return math.expm1(d), None
    se = math.hypot(current.log_se, baseline.log_se)
    return math.expm1(d), (math.expm1(d - z * se), math.expm1(d + z * se))


def verdict_of_change(ci: tuple[float, float] | None, max_regression: float) -> str:
    """fail: the whole interval is beyond the tolerance (a regression larger than allowed, with
    confidence); pass: the whole interval is within it; else inconclusive (measure more)."""
    if ci is None:
        return "inconclusive"
    lo, hi = ci
    if lo > max_regression:
        return "fail"
    if hi <= max_regression:
        return "pass"
    return "inconclusive"
