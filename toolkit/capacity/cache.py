"""Expected cache hit ratios of repeated traffic: popularity models, LRU (Che), unbounded caches.

Pure functions. Requests follow the *independent reference model*: each request names catalog
item ``i`` with probability ``p[i]``, independently of every other request (what the scenario's
``repeat`` block generates, see docs/scenarios.md). Counts of requests are what a cache in front
of the model sees, over every load-generator process together (independent draws from one
distribution are one such stream).

* :func:`popularity`: Zipf(``s``) or uniform probabilities over ``n`` items, most popular first.
* :func:`lru_hit_ratio`: a warm LRU cache of ``entries`` items in the long run, by Che's
  approximation: solve ``sum_i (1 - exp(-p_i T)) = entries`` for the characteristic time ``T``
  (in requests), then ``hit = sum_i p_i (1 - exp(-p_i T))``.
* :func:`repeat_ratio`: a cache that keeps everything for the run (a Redis cache whose TTL outlives
  the run): the expected share of requests that repeat an item already requested, from an empty
  cache, ``1 - (D(before + n) - D(before)) / n`` with ``D(r) = sum_i (1 - (1 - p_i)^r)`` the
  expected number of distinct items in ``r`` requests.
* :func:`lru_hit_ratio_run`: an LRU cache over a run of finite length from an empty cache: request
  ``k + 1`` hits when its item was requested within the last ``min(T, k)`` requests. It tends to
  :func:`lru_hit_ratio` for long runs and to :func:`repeat_ratio` for a cache larger than the catalog.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DISTRIBUTIONS = ("zipf", "uniform")


def popularity(n: int, distribution: str = "zipf", s: float = 1.0) -> np.ndarray:
    """Request probabilities of ``n`` catalog items, item 0 the most popular: ``p_i ~ 1 / (i + 1)^s``
    (Zipf; ``s = 0`` is uniform) or ``1 / n`` (uniform)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"popularity needs n >= 1 items, got {n!r}")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
    if distribution == "uniform" or s == 0:
        return np.full(n, 1.0 / n)
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"zipf needs s >= 0, got {s!r}")
    w = np.arange(1, n + 1, dtype=np.float64) ** -float(s)
    return w / w.sum()


def _probabilities(p: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a < 0) or a.sum() <= 0:
        raise ValueError("probabilities must be a non-empty list of finite numbers >= 0 with a positive sum")
    a = a[a > 0]
    return a / a.sum()


def characteristic_time(p: Sequence[float] | np.ndarray, entries: int) -> float:
    """Che's characteristic time ``T`` (requests) of an LRU cache of ``entries`` items:
    the root of ``sum_i (1 - exp(-p_i T)) = entries``; ``inf`` when the cache holds the catalog."""
    a = _probabilities(p)
    if entries < 1:
        raise ValueError(f"an LRU cache needs entries >= 1, got {entries!r}")
    if entries >= a.size:
        return math.inf

    def filled(t: float) -> float:
        return float(np.sum(-np.expm1(-a * t)))

    lo, hi = 0.0, float(entries)
    while filled(hi) < entries:  # filled(t) increases from 0 towards a.size > entries
        lo, hi = hi, hi * 2.0
    for _ in range(200):  # bisection to float precision
        mid = 0.5 * (lo + hi)
        if filled(mid) < entries:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


def lru_hit_ratio(p: Sequence[float] | np.ndarray, entries: int) -> float:
    """Long-run hit ratio of a warm LRU cache of ``entries`` items (Che's approximation)."""
    a = _probabilities(p)
    t = characteristic_time(a, entries)
    if math.isinf(t):
        return 1.0
    return float(np.sum(a * -np.expm1(-a * t)))


def expected_distinct(p: Sequence[float] | np.ndarray, requests: float) -> float:
    """Expected number of distinct items among ``requests`` independent requests."""
    a = _probabilities(p)
    if requests <= 0:
        return 0.0
    # 1 - (1 - p)^r, computed without cancellation for small p (p = 1: log1p(-1) = -inf, exactly 1 item)
    with np.errstate(divide="ignore"):
        return float(np.sum(-np.expm1(requests * np.log1p(-a))))


def repeat_ratio(p: Sequence[float] | np.ndarray, requests: float, before: float = 0.0) -> float | None:
    """Expected share of ``requests`` (after ``before`` earlier ones, e.g. the warm-up) that repeat an
    item already requested: the hit ratio of a cache that keeps everything, empty at the start.
    None when there are no requests."""
    if requests <= 0:
        return None
    a = _probabilities(p)
    new = expected_distinct(a, before + requests) - expected_distinct(a, before)
    return float(min(1.0, max(0.0, 1.0 - new / requests)))


def lru_hit_ratio_run(p: Sequence[float] | np.ndarray, entries: int, requests: int,
                      before: int = 0) -> float | None:
    """Expected hit ratio of an LRU cache of ``entries`` items, empty at the start, over requests
    ``before + 1 .. before + requests``: request ``k + 1`` hits with probability
    ``sum_i p_i (1 - exp(-p_i min(T, k)))`` (Che's ``T``). None when there are no requests."""
    if requests <= 0:
        return None
    a = _probabilities(p)
    t = characteristic_time(a, entries)
    lo, hi = int(before), int(before) + int(requests)
    # k in [lo, m) are younger than T (the cache has not filled yet), k in [m, hi) are not
    m = hi if math.isinf(t) else min(hi, max(lo, math.ceil(t)))
    r_lo, r_m = np.exp(-a * lo), np.exp(-a * m)
    young = (r_lo - r_m) / -np.expm1(-a)  # sum of exp(-p k) over k in [lo, m)
    old = 0.0 if math.isinf(t) else (hi - m) * np.exp(-a * t)
    misses = young + old  # per item: sum over k of P(item i not cached at request k + 1)
    hit = float(np.sum(a * (requests - misses)) / requests)
    return min(1.0, max(0.0, hit))


def run_hit_ratio(n: int, distribution: str, s: float | None, requests: int, before: int = 0,
                  entries: int | None = None) -> float | None:
    """Expected hit ratio of ``requests`` requests (after ``before``) drawn from a catalog of ``n``
    items, from an empty cache: an LRU of ``entries`` items, else a cache that keeps everything."""
    p = popularity(n, distribution, float(s or 0.0))
    return lru_hit_ratio_run(p, entries, requests, before) if entries else repeat_ratio(p, requests, before)


def catalog_for_hit_ratio(hit_ratio: float, distribution: str, s: float | None, requests: int, before: int = 0,
                          entries: int | None = None, max_catalog: int = 1_000_000) -> int | None:
    """The catalog size whose expected hit ratio over the run (:func:`run_hit_ratio`) is closest to
    ``hit_ratio``: the ratio falls as the catalog grows, so bisect. None when even one item (or
    ``max_catalog`` items) cannot come within 0.01 of it."""
    if requests <= 0 or not 0 <= hit_ratio <= 1:
        return None

    def h(n: int) -> float:
        return run_hit_ratio(n, distribution, s, requests, before, entries) or 0.0

    lo, hi = 1, int(max_catalog)
    if h(lo) < hit_ratio - 0.01 or h(hi) > hit_ratio + 0.01:
        return None
    while hi - lo > 1:  # h(lo) >= hit_ratio > h(hi) once inside
        mid = (lo + hi) // 2
        if h(mid) >= hit_ratio:
            lo = mid
        else:
            hi = mid
    return lo if abs(h(lo) - hit_ratio) <= abs(h(hi) - hit_ratio) else hi
