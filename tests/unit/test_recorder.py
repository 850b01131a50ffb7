"""Exact recording: percentiles, warm-up exclusion, error classes, intervals, merge, hlog."""

from __future__ import annotations

import random

import pytest

from toolkit.recorder import (
    Aggregator, Outcome, Recorder, interval_row, merge_intervals, merge_snapshots, summarize_s, write_hlog,
)


def _ok(intended: float, latency: float, **kw) -> Outcome:
    return Outcome(intended_s=intended, sent_s=intended, done_s=intended + latency, latency_s=latency, ok=True, **kw)


def _exact(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[max(0, -(-int(q * len(v) * 1000) // 1000) - 1)]


def test_percentiles_match_exact_values_to_three_digits() -> None:
    rng = random.Random(1)
    lat = [rng.lognormvariate(-2.0, 0.8) for _ in range(20_000)]
    rec = Recorder(warmup_s=0, duration_s=1000)
    for i, v in enumerate(lat):
        rec.record(_ok(i * 0.04, v))
    s = summarize_s(merge_snapshots([rec.snapshot()]).hist["lat"])
    assert s["count"] == 20_000
    for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert s[key] == pytest.approx(_exact(lat, q), rel=2e-3)
    assert s["max"] == pytest.approx(max(lat), rel=1e-3)
    assert s["min"] == pytest.approx(min(lat), rel=1e-3)


def test_warmup_and_after_window_are_excluded_by_intended_start() -> None:
    rec = Recorder(warmup_s=5, duration_s=10)
    rec.record(_ok(4.9, 9.0))  # warm-up: excluded even though it finishes inside the window
    rec.record(_ok(5.0, 0.1))
    rec.record(_ok(14.9, 0.2))
    rec.record(_ok(15.0, 7.0))  # after the window
    m = merge_snapshots([rec.snapshot()])
    assert m.total == 2 and m.ok == 2
    assert summarize_s(m.hist["lat"])["max"] == pytest.approx(0.2, rel=1e-3)


def test_errors_by_class_bytes_rtf_and_late_starts() -> None:
    rec = Recorder(warmup_s=0, duration_s=100, late_threshold_s=0.01)
    rec.record(_ok(1, 2.0, audio_s=20.0, bytes_sent=100, bytes_received=10))
    rec.record(Outcome(2, 2.5, 3, 1.0, ok=False, error_class="http_503", bytes_sent=100))
    rec.record(Outcome(3, 3, 4, 1.0, ok=False, error_class="timeout"))
    rec.record(Outcome(4, 4, 5, 1.0, ok=False, error_class="http_503"))
    m = merge_snapshots([rec.snapshot()])
    assert (m.total, m.ok, m.errors) == (4, 1, 3)
    assert m.by_class == {"http_503": 2, "timeout": 1}
    assert m.bytes_sent == 200 and m.bytes_received == 10
    assert m.late_starts == 1  # the one sent 0.5 s after its intended start
    assert summarize_s(m.hist["rtf"])["p50"] == pytest.approx(0.1, rel=1e-3)
    assert m.audio_s == 20.0


def test_intervals_close_by_completion_second_and_fill_gaps() -> None:
    rec = Recorder(warmup_s=1, duration_s=10)
    rec.note_scheduled(0.2)
    rec.record(_ok(0.2, 0.3))
    rec.record(_ok(2.1, 0.5))
    rec.record(Outcome(2.2, 2.2, 2.9, 0.7, ok=False, error_class="connection"))
    closed = rec.advance(4.0)
    assert [d["t"] for d in closed] == [0, 1, 2, 3]
    assert closed[0]["ok"] == 1 and closed[0]["offered"] == 1
    assert closed[2]["ok"] == 1 and closed[2]["errors"] == 1
    rows = [interval_row(iv, 1.0) for iv in merge_intervals([closed])]
    assert rows[0]["phase"] == "warmup" and rows[2]["phase"] == "measure"
    assert rows[2]["p50_s"] == pytest.approx(0.5, rel=1e-3) and rows[1]["p50_s"] is None
    # a record arriving after its second was closed lands in the first open one
    rec.record(_ok(3.0, 0.5))
    assert [d["t"] for d in rec.flush()] == [4]


def test_merge_of_two_processes_equals_one_process() -> None:
    rng = random.Random(2)
    vals = [(rng.uniform(0, 20), rng.expovariate(5)) for _ in range(4000)]
    one = Recorder(0, 30)
    parts = [Recorder(0, 30), Recorder(0, 30)]
    for i, (t, v) in enumerate(vals):
        one.record(_ok(t, v))
        parts[i % 2].record(_ok(t, v))
    a = merge_snapshots([one.snapshot()])
    b = merge_snapshots([p.snapshot() for p in parts])
    assert summarize_s(a.hist["lat"]) == summarize_s(b.hist["lat"])
    ia = merge_intervals([one.flush()])
    ib = merge_intervals([p.flush() for p in parts])
    assert [interval_row(x, 0) for x in ia] == [interval_row(x, 0) for x in ib]


def test_aggregator_recent_window_and_idempotent_ingest() -> None:
    rec = Recorder(0, 100)
    for i in range(100):
        rec.note_scheduled(i * 0.1)
        rec.record(_ok(i * 0.1, 0.05 if i % 10 else 0.5))
    ivs = rec.advance(10.0)
    agg = Aggregator()
    agg.ingest("w1", {"intervals": ivs})
    agg.ingest("w1", {"intervals": ivs})  # a repeated report must not double-count
    r = agg.recent(10.0)
    assert r["offered_rps"] == pytest.approx(10) and r["achieved_rps"] == pytest.approx(10)
    assert r["p50_s"] == pytest.approx(0.05, rel=1e-3) and r["p99_s"] == pytest.approx(0.5, rel=1e-3)


def test_hlog_round_trips_the_measured_intervals(tmp_path) -> None:
    from hdrh.histogram import HdrHistogram
    from hdrh.log import HistogramLogReader

    rec = Recorder(warmup_s=2, duration_s=5)
    for i in range(70):
        rec.record(_ok(i * 0.1, 0.010 + i * 0.001))
    ivs = merge_intervals([rec.flush()])
    path = tmp_path / "latency.hlog"
    write_hlog(path, ivs, 2.0, 1_700_000_000.0)
    reader = HistogramLogReader(str(path), HdrHistogram(1, 3_600_000_000, 3))
    total = 0
    while (h := reader.get_next_interval_histogram()) is not None:
        total += h.get_total_count()
    expected = sum(iv["lat"].get_total_count() for iv in ivs if iv["t"] >= 2)
    assert total == expected and expected > 0


def test_small_sample_percentiles_use_nearest_rank() -> None:
    rec = Recorder(warmup_s=0, duration_s=1000)
    values = [(i + 1) * 0.01 for i in range(150)]  # 10 ms .. 1.5 s
    for i, v in enumerate(values):
        rec.record(_ok(float(i), v))
    s = summarize_s(merge_snapshots([rec.snapshot()]).hist["lat"])
    # nearest rank: p99 of 150 values is the ceil(148.5) = 149th, p50 the 75th, p95 the 143rd
    assert s["p99"] == pytest.approx(1.49, rel=1e-3)
    assert s["p50"] == pytest.approx(0.75, rel=1e-3)
    assert s["p95"] == pytest.approx(1.43, rel=1e-3)
    assert s["max"] == pytest.approx(1.5, rel=1e-3) and s["min"] == pytest.approx(0.01, rel=1e-3)


def test_each_second_has_its_own_client_cache_hit_ratio() -> None:
    rec = Recorder(warmup_s=0, duration_s=10)
    for t, cache in ((0.1, "hit"), (0.2, "miss"), (0.3, "miss"), (0.4, "miss"), (1.1, "hit"), (2.5, None)):
        rec.record(Outcome(t, t, t + 0.01, 0.01, ok=True, cache=cache))
    rec.record(Outcome(1.2, 1.2, 1.3, 0.1, ok=False, error_class="http_503", cache="miss"))  # errors do not count
    rows = [interval_row(iv, 0) for iv in merge_intervals([rec.flush()])]
    assert [r["cache_hit_ratio"] for r in rows] == [0.25, 1.0, None]  # no X-Cache at all: empty, not 0
    # merged over processes: counts add up before the ratio is taken
    other = Recorder(warmup_s=0, duration_s=10)
    other.record(Outcome(0.5, 0.5, 0.6, 0.1, ok=True, cache="hit"))
    merged = [interval_row(iv, 0) for iv in merge_intervals([rec.closed_intervals, other.flush()])]
    assert merged[0]["cache_hit_ratio"] == pytest.approx(2 / 5)


def test_live_percentiles_equal_those_of_the_merged_histograms() -> None:
    import random

    from toolkit.recorder import Aggregator, _Interval, _to_us, decode, new_histogram, percentiles_s

    rng = random.Random(7)
    agg, merged = Aggregator(), new_histogram()
    for source in ("a", "b"):
        ivs = []
        for t in range(15):
            iv = _Interval(t)
            for _ in range(rng.randint(0, 80)):
                iv.lat.record_value(_to_us(rng.lognormvariate(-3.5, 0.8)))
            iv.ok = iv.lat.get_total_count()
            ivs.append(iv.to_dict())
        agg.ingest(source, {"intervals": ivs})
        for d in ivs:
            if d["t"] >= 15 - 10 and d["lat"]:
                merged.add(decode(d["lat"]))
    for _ in range(2):  # the second read comes from the decoded cache
        live = agg.recent(15.0)
        want = percentiles_s(merged, [50, 95, 99])
        assert (live["p50_s"], live["p95_s"], live["p99_s"]) == (want[50], want[95], want[99])
