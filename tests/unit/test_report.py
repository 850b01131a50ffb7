"""Report renderers (pure) and the writer, on a small synthetic run directory."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

from toolkit.errors import NoDataError
from toolkit.report import fmt_bytes, fmt_pct, fmt_s, render_html, render_markdown, verdict, write_reports
from toolkit.results import FILES, SCHEMA, TIMESERIES_COLUMNS, telemetry_columns, write_csv, write_json_atomic

SUMMARY: dict[str, Any] = {
    "schema": SCHEMA, "run_id": "20261121-220000-callcenter", "asrtk_version": "0.1.0",
    "created": "2026-11-21T22:00:00Z", "complete": True, "incomplete_reason": None,
    "scenario": {"name": "callcenter", "source": "scenarios/callcenter.yaml", "protocol": "recognize", "seed": 1},
    "target": {"url": "http://127.0.0.1:8000", "embedded": True,
               "server": {"preset": "tiny", "workers": 1, "provider": "CPUExecutionProvider"}},
    "load": {"mode": "open", "offered_rps": 0.6, "achieved_rps": 0.58, "users": None, "processes": 1,
             "stages": [{"duration_s": 60, "rate": 0.6, "users": None, "ramp": False}]},
    "duration_s": 50.0, "warmup_s": 10.0,
    "requests": {"total": 30, "ok": 29, "errors": 1, "error_rate": 1 / 30, "late_starts": 2,
                 "by_class": {"http_503": 1}},
    "throughput": {"rps": 0.58, "audio_s_per_s": 70.1, "bytes_sent_per_s": 2.2e6, "bytes_received_per_s": 300.0},
    "latency_s": {"count": 29, "min": 0.4, "mean": 2.1, "p50": 1.8, "p90": 3.9, "p95": 4.4, "p99": 6.1,
                  "p999": 6.1, "max": 6.1},
    "rtf": {"p50": 0.018, "p95": 0.031, "p99": 0.04, "mean": 0.02}, "stream": None,
    "slo": {"passed": False, "checks": [
        {"name": "latency_p95_s", "threshold": 10.0, "measured": 4.4, "passed": True},
        {"name": "rtf_p95", "threshold": 0.1, "measured": 0.031, "passed": True},
        {"name": "error_rate", "threshold": 0.01, "measured": 1 / 30, "passed": False}]},
    "loadgen": {"valid": True, "warnings": [], "processes": 1, "cpu_max_percent": 35.0,
                "schedule_lag_p50_s": 0.0002, "schedule_lag_p99_s": 0.0011, "schedule_lag_max_s": 0.004},
    "gpu": {"available": False, "reason": "NVML library not found", "devices": []},
    "host": {"cores": 2, "cpu_mean_percent": 71.0, "cpu_max_percent": 99.0, "memory_used_max_bytes": 3.1e9,
             "target_cpu_cores_mean": 1.1, "target_cpu_s_per_request": 0.012, "other_cpu_cores_mean": 0.02,
             "steal_cpu_cores_mean": 0.05, "interference_cpu_cores_mean": 0.07, "interference_threshold_cores": 0.25,
             "disturbed": False},
    "server": {"scraped": ["http://127.0.0.1:8000/metrics"], "queue_depth_max": 5, "batch_size_mean": 2.2,
               "inference_s_mean": 0.3, "queue_wait_s_mean": 0.05, "rejected_total": 1},
    "files": dict(FILES),
}


def timeseries(n: int = 60, warmup: int = 10) -> list[dict[str, Any]]:
    return [{"t_s": t, "phase": "warmup" if t < warmup else "measure", "offered_rps": 0.6,
             "achieved_rps": (t % 3) / 2, "ok": t % 2, "errors": 1 if t == 30 else 0, "inflight": t % 4,
             "p50_s": 1.5 + t / 100, "p95_s": 4.0 + t / 100, "p99_s": 5.0 + t / 100, "max_s": 6.0,
             "rtf_p50": 0.02, "schedule_lag_p99_s": 0.001, "bytes_sent": 3_000_000, "bytes_received": 300}
            for t in range(n)]


def telemetry(n: int = 60, gpus: int = 0) -> list[dict[str, Any]]:
    rows = []
    for t in range(n):
        r: dict[str, Any] = {"t_s": t, "cpu_percent": 60.0 + t % 10, "cpu_max_core_percent": 95.0,
                             "mem_used_bytes": 3e9, "loadgen_cpu_percent": 20.0}
        for i in range(gpus):
            r.update({f"gpu{i}_util_ratio": 0.5, f"gpu{i}_mem_used_bytes": 4e9, f"gpu{i}_mem_total_bytes": 8e9,
                      f"gpu{i}_power_watts": 70.0, f"gpu{i}_sm_clock_hz": 1.5e9, f"gpu{i}_temp_celsius": 60.0})
        rows.append(r)
    return rows


SPECTRUM = [(0.0, 0.4), (50.0, 1.8), (90.0, 3.9), (95.0, 4.4), (99.0, 6.1), (99.9, 6.1), (99.99, 6.1), (100.0, 6.1)]


def test_formatters() -> None:
    assert fmt_s(0.0123) == "12.3 ms" and fmt_s(4.56) == "4.56 s" and fmt_s(0.0002) == "200 µs"
    assert fmt_s(None) == "–" and fmt_s(float("nan")) == "–"
    assert fmt_pct(0.0333) == "3.33 %" and fmt_pct(71.0, ratio=False) == "71 %"
    assert fmt_bytes(2.2e6) == "2.1 MiB" and fmt_bytes(300) == "300 B"


def test_verdict_reads_slo_validity_and_completeness() -> None:
    v = verdict(SUMMARY)
    assert (v["slo"], v["valid"], v["complete"], v["incomplete_reason"]) == ("FAIL", "VALID", "COMPLETE", None)
    s = copy.deepcopy(SUMMARY)
    s.update(complete=False, incomplete_reason="interrupted")
    s["slo"]["passed"] = True
    s["loadgen"].update(valid=False, warnings=["load generator CPU 97% > 90%: add --processes 2"])
    v = verdict(s)
    assert (v["slo"], v["valid"], v["complete"], v["incomplete_reason"]) == ("PASS", "INVALID", "INCOMPLETE",
                                                                            "interrupted")
    assert v["warnings"] == ["load generator CPU 97% > 90%: add --processes 2"]


def test_markdown_has_verdict_and_the_numbers_as_tables() -> None:
    md = render_markdown(SUMMARY, timeseries(), telemetry(), latency_spectrum=SPECTRUM)
    assert md.startswith("# asrtk bench: callcenter — 20261121-220000-callcenter\n")
    assert "**SLO FAIL** · **run VALID** · **COMPLETE**" in md
    assert "| 29 | 400 ms | 2.1 s | 1.8 s | 3.9 s | 4.4 s | 6.1 s | 6.1 s | 6.1 s |" in md
    assert "| error_rate | 1 % | 3.33 % | FAIL |" in md
    assert "| latency_p95_s | 10 s | 4.4 s | pass |" in md
    assert "| rtf_p95 | 0.1 | 0.031 | pass |" in md
    assert "| http_503 | 1 |" in md
    assert "| 99.9 | 6.1 s |" in md
    assert "| p50 | p95 | p99 | mean |" in md and "| 0.018 | 0.031 | 0.04 | 0.02 |" in md
    assert "NVML library not found" in md
    assert "| host CPU |" in md
    # Every row of a table has the header's column count.
    for block in re.findall(r"(?:^\|.*\|\n)+", md, flags=re.M):
        counts = {line.count(" | ") for line in block.splitlines() if not line.startswith("|---")}
        assert len(counts) == 1, block


def test_markdown_incomplete_invalid_with_warnings_and_stream() -> None:
    s = copy.deepcopy(SUMMARY)
    s.update(complete=False, incomplete_reason="interrupted", rtf=None,
             stream={"partial_latency_s": {"p50": 0.12, "p95": 0.31, "p99": 0.5, "max": 0.9, "count": 400},
                     "final_latency_s": {"p50": 0.5, "p95": 0.9, "p99": 1.1, "max": 1.3, "count": 12}})
    s["loadgen"].update(valid=False, warnings=["schedule lag p99 120 ms > 50 ms: add --processes"])
    md = render_markdown(s, [], [])
    assert "**INCOMPLETE** (interrupted)" in md and "**run INVALID**" in md
    assert "> warning: schedule lag p99 120 ms > 50 ms: add --processes" in md
    assert "| partial (per chunk) | 400 | 120 ms | 310 ms | 500 ms | 900 ms |" in md
    assert "Real-time factor" not in md


def test_renderers_survive_a_minimal_summary() -> None:
    bare = {"schema": SCHEMA, "run_id": "r", "complete": False, "incomplete_reason": None}
    md = render_markdown(bare, [], [])
    assert "**INCOMPLETE** (unknown)" in md and "SLO N/A" in md
    page = render_html(bare, [], [])
    assert "No time series were recorded" in page and "plotly" not in page.lower().split("</style>")[0]


def test_html_is_self_contained_with_plotly_inlined_once() -> None:
    page = render_html(SUMMARY, timeseries(), telemetry(gpus=1), latency_spectrum=SPECTRUM,
                       server_rows=[{"t_s": 1, "url": "x", "metric": "asrtk_queue_depth", "labels": "model=asr",
                                     "value": 3}])
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("plotly.js (basic - minified) v") == 1  # the library's banner: inlined exactly once
    assert not re.search(r"<script[^>]+src=\"https?:", page)  # nothing fetched from the network
    for div in ("chart-latency", "chart-throughput", "chart-distribution", "chart-cpu", "chart-gpu",
                "chart-server-queue"):
        assert f'id="{div}"' in page, div
    assert "SLO FAIL" in page and "run VALID" in page and "COMPLETE" in page
    assert "4.4 s" in page and "3.33 %" in page


def test_an_hour_long_run_report_stays_under_1_5_mb() -> None:
    """Issue 14's target: the full plotly.js was 4.9 MB per report; the basic bundle is 1.2 MB."""
    page = render_html(SUMMARY, timeseries(3600, warmup=30), telemetry(3600, gpus=1), latency_spectrum=SPECTRUM)
    assert len(page.encode()) <= 1.5 * 2**20, len(page.encode())
    for div in ("chart-latency", "chart-throughput", "chart-distribution", "chart-cpu", "chart-gpu"):
        assert f'id="{div}"' in page, div


def test_the_vendored_bundle_matches_the_plotly_that_writes_the_figures() -> None:
    from plotly.offline import get_plotlyjs_version

    from toolkit import plotjs

    assert plotjs.BUNDLE.is_file() and plotjs.VERSION in plotjs.BUNDLE.read_text()[:200]
    # same major version: the figure JSON is read by the bundle it was written for
    assert get_plotlyjs_version().split(".")[0] == plotjs.VERSION.split(".")[0]


def test_histogram_fallback_is_drawn_as_bars_the_basic_bundle_has() -> None:
    page = render_html(SUMMARY, timeseries(), telemetry(gpus=0))
    assert '"type":"histogram"' not in page.replace(" ", "") and "per-second p95" in page


def test_html_without_gpu_or_hlog_falls_back() -> None:
    page = render_html(SUMMARY, timeseries(), telemetry(gpus=0))
    assert 'id="chart-gpu"' not in page
    assert "no latency.hlog" in page  # the distribution comes from per-second p95s instead


def test_html_escapes_untrusted_strings() -> None:
    s = copy.deepcopy(SUMMARY)
    s["scenario"]["name"] = "<script>alert(1)</script>"
    s["loadgen"]["warnings"] = ["<b>x</b>"]
    page = render_html(s, [], [])
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page


def test_renderers_are_pure() -> None:
    s = copy.deepcopy(SUMMARY)
    ts, tel = timeseries(), telemetry()
    first = render_html(s, ts, tel, latency_spectrum=SPECTRUM)
    assert render_html(s, ts, tel, latency_spectrum=SPECTRUM) == first  # deterministic, no clock
    assert s == SUMMARY and ts == timeseries()  # inputs untouched


def write_run(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    write_json_atomic(run_dir / FILES["summary"], SUMMARY)
    write_csv(run_dir / FILES["timeseries"], TIMESERIES_COLUMNS, timeseries())
    write_csv(run_dir / FILES["telemetry"], telemetry_columns(0), telemetry())
    with open(run_dir / FILES["latency_log"], "w") as fh:
        w = HistogramLogWriter(fh)
        w.output_base_time(1_763_762_400_000.0)
        w.base_time = 1_763_762_400_000.0
        for t in range(10, 60):
            h = HdrHistogram(1, 3_600_000_000, 3)
            for i in range(10):
                h.record_value(400_000 + 100_000 * i)
            w.output_interval_histogram(h, float(t), float(t + 1), 1e6)


def test_write_reports_reads_the_run_dir(tmp_path: Path) -> None:
    run = tmp_path / SUMMARY["run_id"]
    write_run(run)
    html_path, md_path = write_reports(run)
    assert (html_path.name, md_path.name) == ("report.html", "report.md")
    md = md_path.read_text()
    assert "## Latency percentile spectrum (latency.hlog)" in md
    assert "| 100 | 1.3 s |" in md  # the largest recorded value, from the log
    assert 'id="chart-distribution"' in html_path.read_text()


def test_write_reports_without_summary(tmp_path: Path) -> None:
    with pytest.raises(NoDataError):
        write_reports(tmp_path)


def test_tail_note_names_the_percentiles_that_equal_the_maximum() -> None:
    from toolkit.report import tail_note

    note = tail_note(10)
    assert note is not None and "p95, p99, p99.9" in note and "10 requests" in note
    note = tail_note(23)
    assert note is not None and ": p99, p99.9 equal" in note
    note = tail_note(150)
    assert note is not None and "p99.9" in note and "p99," not in note
    assert tail_note(5000) is None
    assert tail_note(None) is None and tail_note(0) is None


def _lat(p50: float) -> dict[str, Any]:
    return {"count": 10, "min": p50, "mean": p50, "p50": p50, "p90": p50, "p95": p50, "p99": p50, "p999": p50,
            "max": p50}


CACHE = {
    "client": {"responses": 1000, "hits": 412, "misses": 588, "hit_ratio": 0.412,
               "latency_hit_s": _lat(0.004), "latency_miss_s": _lat(0.25)},
    "server": {"scraped": ["http://t/metrics"], "requests": 1004, "hits": 415, "hit_ratio": 0.4133,
               "levels": {"memory": {"hits": 300, "misses": 704, "errors": 0, "lookups": 1004},
                          "redis": {"hits": 115, "misses": 589, "errors": 0, "lookups": 704}}},
    "expected": {"hit_ratio": 0.405, "steady_hit_ratio": None, "requests": 1000, "requests_before": 100,
                 "models": [{"scenario": "tts", "repeat": True, "distribution": "zipf", "s": 1.1, "catalog": 5000,
                             "cache_entries": None, "share": 1.0, "hit_ratio": 0.405, "steady_hit_ratio": None}]},
}


def test_the_cache_shows_as_one_line_and_one_table() -> None:
    from toolkit.report import cache_line

    assert cache_line(SUMMARY) is None and "## Cache" not in render_markdown(SUMMARY, [], [])
    s = copy.deepcopy(SUMMARY)
    s["cache"] = CACHE
    assert cache_line(s) == ("41.2 % of 1,000 responses (p50 hit 4 ms, miss 250 ms), server 41.3 %, "
                             "expected 40.5 % (zipf s=1.1 over 5,000 items)")
    md = render_markdown(s, [], [])
    table = md.split("## Cache (successful responses, measured window)", 1)[1].split("\n## ", 1)[0]
    assert "| client (X-Cache) | 41.2 % | 1,000 |" in table
    assert "|   misses |  | 588 | 250 ms | 250 ms | 250 ms |" in table
    assert "server (/metrics: memory 300/1,004, redis 115/704)" in table
    assert "| expected (zipf s=1.1 over 5,000 items) | 40.5 % | 1,000 |" in table
    assert "Cache (successful responses" in render_html(s, timeseries(), telemetry())
    # a target that has a cache but no header: say so instead of a ratio
    s["cache"] = {**CACHE, "client": {**CACHE["client"], "responses": 0, "hits": 0, "misses": 0, "hit_ratio": None},
                  "expected": None}
    assert cache_line(s) == "no response carried X-Cache, server 41.3 %"
