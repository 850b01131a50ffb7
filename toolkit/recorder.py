"""Exact latency recording: HDR histograms per 1 s interval, error classes, bytes, merge.

Values are microseconds in ``HdrHistogram(1, 3_600_000_000, 3)`` (1 us .. 1 h, 3
significant digits); RTF is stored in millionths. Every reported percentile comes from
these histograms, never from Locust's rounded stats.

Two views of the same requests:

* **intervals** (one per second of completion time, warm-up included) feed
  ``timeseries.csv``, ``latency.hlog`` and the live view;
* **totals** cover the measured window only: requests whose *intended* start is in
  ``[warmup_s, warmup_s + duration_s)``. ``summary.json`` comes from them.

Both are plain dicts of encoded histograms, so a worker process can ship them to the
master (Locust's ``report_to_master``) and the master merges them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT = 3
US = 1_000_000
# lat: latency of successful requests; hit / miss: the same split by the response's X-Cache header
_HISTS = ("lat", "rtf", "lag", "partial", "final", "hit", "miss")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT)


def _to_us(seconds: float) -> int:
    return min(HIGHEST_US, max(LOWEST_US, int(round(seconds * US))))


def decode(encoded: str | bytes | None) -> HdrHistogram:
    h = new_histogram()
    if encoded:
        h.decode_and_add(encoded if isinstance(encoded, bytes) else encoded.encode())
    return h


def encode(h: HdrHistogram) -> str:
    return h.encode().decode()


@dataclass
class Outcome:
    """One finished request (or streaming session). Times are seconds since run start."""

    intended_s: float
    sent_s: float
    done_s: float
    latency_s: float  # from the intended start (open loop) or the send time (closed loop)
    ok: bool
    error_class: str | None = None  # "timeout", "connection", "http_503", ...
    audio_s: float | None = None  # RTF = latency_s / audio_s
    bytes_sent: int = 0
    bytes_received: int = 0
    partial_latencies_s: list[float] = field(default_factory=list)  # stream: per chunk
    final_latency_s: float | None = None  # stream: final result after end of audio
    chunk_lags_s: list[float] = field(default_factory=list)  # stream: chunk send lag
    cache: str | None = None  # "hit" / "miss": the response's X-Cache header; None without one
    retry_after: str | None = None  # the response's Retry-After header (asrtk drill judges refusals by it)

    @property
    def lag_s(self) -> float:
        return max(0.0, self.sent_s - self.intended_s)


class _Totals:
    def __init__(self) -> None:
        self.h = {k: new_histogram() for k in _HISTS}
        self.total = self.ok = self.errors = self.late_starts = 0
        self.by_class: dict[str, int] = {}
        self.bytes_sent = self.bytes_received = 0
        self.audio_s = 0.0
        self.scheduled = 0
        self.scheduled_before = 0  # arrivals before the window (warm-up): they fill a target's cache
        self.cache_hits = self.cache_misses = 0  # successful responses with X-Cache: hit / miss

    def snapshot(self) -> dict:
        return {
            "hist": {k: encode(v) if v.get_total_count() else None for k, v in self.h.items()},
            "total": self.total, "ok": self.ok, "errors": self.errors, "late_starts": self.late_starts,
            "by_class": dict(self.by_class), "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received, "audio_s": self.audio_s, "scheduled": self.scheduled,
            "scheduled_before": self.scheduled_before, "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
        }


class _Interval:
    def __init__(self, t: int) -> None:
        self.t = t
        self.lat = new_histogram()
        self.rtf = new_histogram()
        self.lag = new_histogram()
        self.ok = self.errors = self.offered = 0
        self.bytes_sent = self.bytes_received = 0
        self.inflight = 0
        self.audio_s = 0.0
        self.cache_hits = self.cache_misses = 0  # successful responses with X-Cache: hit / miss

    def to_dict(self) -> dict:
        return {
            "t": self.t, "offered": self.offered, "ok": self.ok, "errors": self.errors, "audio_s": self.audio_s,
            "inflight": self.inflight, "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
            "cache_hits": self.cache_hits, "cache_misses": self.cache_misses,
            "lat": encode(self.lat) if self.lat.get_total_count() else None,
            "rtf": encode(self.rtf) if self.rtf.get_total_count() else None,
            "lag": encode(self.lag) if self.lag.get_total_count() else None,
        }


class Recorder:
    """Collects outcomes in one process. Not thread-safe; gevent greenlets are fine."""

    def __init__(self, warmup_s: float, duration_s: float, late_threshold_s: float = 0.010) -> None:
        self.warmup_s = warmup_s
        self.end_s = warmup_s + duration_s
        self.late_threshold_s = late_threshold_s
        self.totals = _Totals()
        self._open: dict[int, _Interval] = {}
        self._closed: list[dict] = []
        self._closed_upto = 0  # intervals < this index are closed
        self.inflight = 0

    def in_window(self, intended_s: float) -> bool:
        return self.warmup_s <= intended_s < self.end_s

    def _interval(self, t_s: float) -> _Interval:
        idx = max(int(math.floor(t_s)), self._closed_upto)
        iv = self._open.get(idx)
        if iv is None:
            iv = self._open[idx] = _Interval(idx)
        return iv

    def note_scheduled(self, intended_s: float) -> None:
        """An arrival is due (open loop): counts toward the offered rate."""
        self._interval(intended_s).offered += 1
        if self.in_window(intended_s):
            self.totals.scheduled += 1
        elif intended_s < self.warmup_s:
            self.totals.scheduled_before += 1

    def record(self, o: Outcome) -> None:
        iv = self._interval(o.done_s)
        iv.bytes_sent += o.bytes_sent
        iv.bytes_received += o.bytes_received
        lags = [o.lag_s, *o.chunk_lags_s]
        for lag in lags:
            iv.lag.record_value(_to_us(lag))
        if o.ok:
            iv.ok += 1
            iv.lat.record_value(_to_us(o.latency_s))
            if o.cache == "hit":
                iv.cache_hits += 1
            elif o.cache == "miss":
                iv.cache_misses += 1
            if o.audio_s:
                iv.audio_s += o.audio_s
                iv.rtf.record_value(_to_us(o.latency_s / o.audio_s))
        else:
            iv.errors += 1
        if not self.in_window(o.intended_s):
            return
        t = self.totals
        t.total += 1
        t.bytes_sent += o.bytes_sent
        t.bytes_received += o.bytes_received
        for lag in lags:
            t.h["lag"].record_value(_to_us(lag))
        if o.lag_s > self.late_threshold_s:
            t.late_starts += 1
        if o.ok:
            t.ok += 1
            t.h["lat"].record_value(_to_us(o.latency_s))
            if o.audio_s:
                t.audio_s += o.audio_s
                t.h["rtf"].record_value(_to_us(o.latency_s / o.audio_s))
            for p in o.partial_latencies_s:
                t.h["partial"].record_value(_to_us(p))
            if o.final_latency_s is not None:
                t.h["final"].record_value(_to_us(o.final_latency_s))
            if o.cache == "hit":
                t.cache_hits += 1
                t.h["hit"].record_value(_to_us(o.latency_s))
            elif o.cache == "miss":
                t.cache_misses += 1
                t.h["miss"].record_value(_to_us(o.latency_s))
        else:
            t.errors += 1
            cls = o.error_class or "other"
            t.by_class[cls] = t.by_class.get(cls, 0) + 1

    def advance(self, now_s: float) -> list[dict]:
        """Close every interval that ended before ``now_s``; returns them (encoded)."""
        upto = int(math.floor(now_s))
        done = []
        for idx in range(self._closed_upto, upto):
            iv = self._open.pop(idx, None) or _Interval(idx)
            iv.inflight = self.inflight
            d = iv.to_dict()
            done.append(d)
            self._closed.append(d)
        self._closed_upto = max(self._closed_upto, upto)
        return done

    def flush(self) -> list[dict]:
        """Close every interval that holds data (end of run)."""
        last = max(self._open, default=self._closed_upto - 1)
        return self.advance(last + 1)

    @property
    def closed_intervals(self) -> list[dict]:
        return list(self._closed)

    def snapshot(self) -> dict:
        return self.totals.snapshot()


# ---------------------------------------------------------------------------- merging


@dataclass
class Merged:
    """Totals of the measured window, merged over every process."""

    hist: dict[str, HdrHistogram]
    total: int
    ok: int
    errors: int
    late_starts: int
    by_class: dict[str, int]
    bytes_sent: int
    bytes_received: int
    audio_s: float
    scheduled: int
    scheduled_before: int = 0
    cache_hits: int = 0
    cache_misses: int = 0


def merge_snapshots(snaps: Iterable[dict]) -> Merged:
    m = Merged({k: new_histogram() for k in _HISTS}, 0, 0, 0, 0, {}, 0, 0, 0.0, 0)
    for s in snaps:
        for k in _HISTS:
            enc = s["hist"].get(k)
            if enc:
                m.hist[k].decode_and_add(enc.encode() if isinstance(enc, str) else enc)
        for k in ("total", "ok", "errors", "late_starts", "bytes_sent", "bytes_received", "scheduled"):
            setattr(m, k, getattr(m, k) + int(s[k]))
        for k in ("scheduled_before", "cache_hits", "cache_misses"):
            setattr(m, k, getattr(m, k) + int(s.get(k, 0)))
        m.audio_s += float(s["audio_s"])
        for cls, n in s["by_class"].items():
            m.by_class[cls] = m.by_class.get(cls, 0) + int(n)
    return m


def merge_intervals(parts: Iterable[Iterable[dict]]) -> list[dict]:
    """Merge interval lists from several processes by second; histograms decoded.

    Returns one dict per second (ascending, gaps filled) with HdrHistogram objects
    under ``lat``, ``rtf`` and ``lag``.
    """
    by_t: dict[int, dict] = {}
    for part in parts:
        for d in part:
            cur = by_t.get(d["t"])
            if cur is None:
                cur = by_t[d["t"]] = _empty_interval(d["t"])
            for k in ("offered", "ok", "errors", "inflight", "bytes_sent", "bytes_received"):
                cur[k] += int(d[k])
            for k in ("cache_hits", "cache_misses"):  # absent from an older worker's intervals
                cur[k] += int(d.get(k, 0))
            cur["audio_s"] += float(d.get("audio_s", 0.0))
            for k in ("lat", "rtf", "lag"):
                if d.get(k):
                    cur[k].decode_and_add(d[k].encode() if isinstance(d[k], str) else d[k])
    if not by_t:
        return []
    return [by_t.get(t) or _empty_interval(t) for t in range(min(by_t), max(by_t) + 1)]


def _empty_interval(t: int) -> dict:
    return {"t": t, "offered": 0, "ok": 0, "errors": 0, "inflight": 0, "bytes_sent": 0, "bytes_received": 0,
            "audio_s": 0.0, "cache_hits": 0, "cache_misses": 0,
            "lat": new_histogram(), "rtf": new_histogram(), "lag": new_histogram()}


def value_at_percentiles(h: HdrHistogram, ps: Iterable[float]) -> dict[float, int]:
    """Nearest-rank percentiles (0-100) of ``h`` in its own units: the smallest recorded
    value with at least ``ceil(p/100 * N)`` values at or below it (hdrh's own rounds the
    rank to nearest, which reads p99 of 150 samples as the 148th value instead of 149th)."""
    n = h.get_total_count()
    targets = sorted({float(p) for p in ps})
    out: dict[float, int] = {}
    if n == 0 or not targets:
        return out
    need = [(p, max(1, min(n, math.ceil(p / 100.0 * n - 1e-9)))) for p in targets]
    try:  # the counts as one array: a cumulative sum finds every rank at once (~20x the loop below)
        import numpy as np

        cum = np.cumsum(np.ctypeslib.as_array(h.counts)[:h.counts_len])
    except (TypeError, ValueError, AttributeError):
        cum = None
    if cum is not None and int(cum[-1]) == n:
        idx = np.searchsorted(cum, [r for _p, r in need], side="left")
        return {p: h.get_highest_equivalent_value(h.get_value_from_index(int(k))) for (p, _r), k in zip(need, idx)}
    total, i = 0, 0
    for index in range(h.counts_len):
        c = h.get_count_at_index(index)
        if not c:
            continue
        total += c
        while i < len(need) and total >= need[i][1]:
            out[need[i][0]] = h.get_highest_equivalent_value(h.get_value_from_index(index))
            i += 1
        if i == len(need):
            break
    return out


def percentiles_s(h: HdrHistogram, ps: Iterable[float], scale: float = US) -> dict[float, float | None]:
    """Nearest-rank percentiles (0-100) of a microsecond histogram in seconds; None when empty."""
    ps = list(ps)
    if h.get_total_count() == 0:
        return {p: None for p in ps}
    d = value_at_percentiles(h, ps)
    return {p: d[float(p)] / scale for p in ps}


_TEMPLATE: HdrHistogram | None = None


def _percentiles_from_counts(counts: Any, ps: Iterable[float]) -> dict[float, float | None]:
    """Nearest-rank percentiles (seconds) of a counts array laid out as :func:`new_histogram`'s."""
    import numpy as np

    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = new_histogram()
    cum = np.cumsum(counts)
    n = int(cum[-1]) if len(cum) else 0
    if n == 0:
        return {float(p): None for p in ps}
    out: dict[float, float | None] = {}
    for p in ps:
        rank = max(1, min(n, math.ceil(float(p) / 100.0 * n - 1e-9)))
        k = int(np.searchsorted(cum, rank, side="left"))
        out[float(p)] = _TEMPLATE.get_highest_equivalent_value(_TEMPLATE.get_value_from_index(k)) / US
    return out


def summarize_s(h: HdrHistogram, scale: float = US) -> dict[str, float | int | None]:
    """count, min, mean, p50 .. p999, max in seconds (or ratio for RTF)."""
    n = h.get_total_count()
    if n == 0:
        return {"count": 0, "min": None, "mean": None, "p50": None, "p90": None, "p95": None,
                "p99": None, "p999": None, "max": None}
    pct = value_at_percentiles(h, [50, 90, 95, 99, 99.9])
    return {
        "count": int(n),
        "min": h.get_lowest_equivalent_value(h.get_min_value()) / scale,
        "mean": h.get_mean_value() / scale,
        "p50": pct[50.0] / scale, "p90": pct[90.0] / scale, "p95": pct[95.0] / scale,
        "p99": pct[99.0] / scale, "p999": pct[99.9] / scale,
        "max": h.get_highest_equivalent_value(h.get_max_value()) / scale,
    }


def interval_row(iv: dict, warmup_s: float) -> dict:
    """One ``timeseries.csv`` row from a merged interval."""
    lat = percentiles_s(iv["lat"], [50, 95, 99])
    rtf = percentiles_s(iv["rtf"], [50])
    lag = percentiles_s(iv["lag"], [99])
    looked_up = iv.get("cache_hits", 0) + iv.get("cache_misses", 0)
    return {
        "t_s": iv["t"],
        "phase": "warmup" if iv["t"] < warmup_s else "measure",
        "offered_rps": iv["offered"],
        "achieved_rps": iv["ok"],
        "ok": iv["ok"],
        "errors": iv["errors"],
        "inflight": iv["inflight"],
        "p50_s": lat[50], "p95_s": lat[95], "p99_s": lat[99],
        "max_s": iv["lat"].get_max_value() / US if iv["lat"].get_total_count() else None,
        "rtf_p50": rtf[50],
        "schedule_lag_p99_s": lag[99],
        "bytes_sent": iv["bytes_sent"],
        "bytes_received": iv["bytes_received"],
        # successful responses of the second with X-Cache: hit / (hit + miss); empty without any
        "cache_hit_ratio": iv.get("cache_hits", 0) / looked_up if looked_up else None,
    }


def write_hlog(path, intervals: list[dict], warmup_s: float, base_epoch_s: float) -> None:
    """``latency.hlog``: one interval histogram (microseconds) per measured second."""
    from hdrh.log import HistogramLogWriter

    with open(path, "w") as fh:
        w = HistogramLogWriter(fh)
        w.output_comment("[asrtk latency log: request latency from intended start, microseconds]")
        w.output_log_format_version()
        w.output_comment(f"[StartTime: {base_epoch_s:.3f} (seconds since epoch)]")
        w.output_base_time(base_epoch_s * 1000.0)
        w.output_legend()
        w.base_time = base_epoch_s * 1000.0
        for iv in intervals:
            if iv["t"] < warmup_s or iv["lat"].get_total_count() == 0:
                continue
            h = iv["lat"]
            start_ms = (base_epoch_s + iv["t"]) * 1000.0
            h.set_start_time_stamp(start_ms)
            h.set_end_time_stamp(start_ms + 1000.0)
            w.output_interval_histogram(h, float(iv["t"]) or 0.0, float(iv["t"] + 1), 1_000_000.0)


class Aggregator:
    """Interval and totals dicts from one or more processes (keyed by source), merged on
    demand. The single process case feeds it too, so both paths share the same code."""

    def __init__(self) -> None:
        self.intervals: dict[str, dict[int, dict]] = {}
        self.totals: dict[str, dict] = {}
        self.inflight: dict[str, int] = {}
        self.cpu_percent: dict[str, float] = {}
        self._counts: dict[tuple[str, int], tuple[Any, Any]] = {}

    def ingest(self, source: str, payload: dict | None) -> None:
        if not payload:
            return
        ivs = self.intervals.setdefault(source, {})
        for d in payload.get("intervals", ()):
            ivs[int(d["t"])] = d
            self.inflight[source] = int(d.get("inflight", 0))
        if payload.get("totals") is not None:
            self.totals[source] = payload["totals"]
        if payload.get("cpu_percent") is not None:
            self.cpu_percent[source] = float(payload["cpu_percent"])

    def merged_intervals(self) -> list[dict]:
        return merge_intervals(list(d.values()) for d in self.intervals.values())

    def merged_totals(self) -> Merged:
        return merge_snapshots(self.totals.values())

    def _lat_counts(self, source: str, t: int, encoded: str | bytes) -> Any:
        """An interval's latency counts as a numpy array, decoded once (the live view reads the
        same seconds again every refresh; it runs in the load generator's event loop)."""
        import numpy as np

        key = (source, t)
        hit = self._counts.get(key)
        if hit is None or hit[0] is not encoded:
            h = decode(encoded)
            hit = (encoded, np.ctypeslib.as_array(h.counts)[:h.counts_len].copy())
            self._counts[key] = hit
        return hit[1]

    def recent(self, now_s: float, span_s: int = 10) -> dict[str, Any]:
        """Live figures over the last ``span_s`` closed seconds."""
        import numpy as np

        lo = int(now_s) - span_s
        for key in [k for k in self._counts if k[1] < lo]:
            del self._counts[key]
        counts = None
        ok = err = offered = 0
        seconds = set()
        for source, ivs in self.intervals.items():
            for t, d in ivs.items():
                if t >= lo:
                    seconds.add(t)
                    ok += d["ok"]
                    err += d["errors"]
                    offered += d["offered"]
                    if d.get("lat"):
                        c = self._lat_counts(source, t, d["lat"])
                        counts = c.copy() if counts is None else counts + c
        n = max(1, len(seconds))
        pct = _percentiles_from_counts(counts, [50, 95, 99]) if counts is not None else dict.fromkeys((50, 95, 99))
        return {"offered_rps": offered / n, "achieved_rps": ok / n, "errors": err,
                "p50_s": pct[50], "p95_s": pct[95], "p99_s": pct[99],
                "inflight": sum(self.inflight.values())}
