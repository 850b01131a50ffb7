"""Results store: run directories, atomic JSON, summary schema, CSV round trips, latency log."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

from toolkit.errors import ConfigError, NoDataError
from toolkit.results import (
    FILES,
    SCHEMA,
    TIMESERIES_COLUMNS,
    latency_spectrum,
    list_runs,
    new_run_dir,
    read_csv,
    read_summary,
    telemetry_columns,
    validate_summary,
    write_csv,
    write_json_atomic,
)

NOW = datetime(2026, 11, 21, 22, 0, 5, tzinfo=timezone.utc)


def summary(run_id: str = "20261121-220005-callcenter", created: str = "2026-11-21T22:00:05Z",
            **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "schema": SCHEMA, "run_id": run_id, "asrtk_version": "0.1.0", "created": created,
        "complete": True, "incomplete_reason": None,
        "scenario": {"name": "callcenter", "source": "scenarios/callcenter.yaml", "protocol": "recognize", "seed": 1},
        "target": {"url": "http://127.0.0.1:9", "embedded": False, "server": None},
        "load": {"mode": "open", "offered_rps": 1.0, "achieved_rps": 0.9, "users": None, "processes": 1,
                 "stages": [{"duration_s": 6, "rate": 1.0, "users": None, "ramp": False}]},
        "duration_s": 5.0, "warmup_s": 1.0,
        "requests": {"total": 5, "ok": 5, "errors": 0, "error_rate": 0.0, "late_starts": 0, "by_class": {}},
        "throughput": {"rps": 1.0, "audio_s_per_s": 60.0, "bytes_sent_per_s": 1e6, "bytes_received_per_s": 100.0},
        "latency_s": {"count": 5, "min": 0.1, "mean": 0.2, "p50": 0.2, "p90": 0.3, "p95": 0.3, "p99": 0.3,
                      "p999": 0.3, "max": 0.3},
        "rtf": {"p50": 0.01, "p95": 0.02, "p99": 0.02, "mean": 0.01}, "stream": None,
        "slo": {"passed": True, "checks": []},
        "loadgen": {"valid": True, "warnings": [], "processes": 1, "cpu_max_percent": 20.0,
                    "schedule_lag_p50_s": 0.0001, "schedule_lag_p99_s": 0.001, "schedule_lag_max_s": 0.002},
        "gpu": {"available": False, "reason": "no NVML", "devices": []},
        "host": {"cores": 2, "cpu_mean_percent": 50.0, "cpu_max_percent": 90.0, "memory_used_max_bytes": 1e9,
                 "target_cpu_cores_mean": None, "target_cpu_s_per_request": None, "other_cpu_cores_mean": 0.0,
                 "steal_cpu_cores_mean": 0.0, "interference_cpu_cores_mean": 0.0, "interference_threshold_cores": 0.25,
                 "disturbed": False},
        "server": None, "files": dict(FILES),
    }
    d.update(over)
    return d


def test_new_run_dir_names_and_collisions(tmp_path: Path) -> None:
    a = new_run_dir(tmp_path / "out", "callcenter", NOW)
    b = new_run_dir(tmp_path / "out", "callcenter", NOW)
    c = new_run_dir(tmp_path / "out", "my scenario/../x", NOW)
    assert a.name == "20261121-220005-callcenter" and a.is_dir()
    assert b.name == "20261121-220005-callcenter-2"
    assert c.parent == tmp_path / "out" and c.name == "20261121-220005-my-scenario-x"


def test_write_json_atomic_nulls_non_finite_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "d" / "summary.json"
    write_json_atomic(p, {"a": math.nan, "b": [math.inf, 1.5], "c": Path("/x")})
    assert json.loads(p.read_text()) == {"a": None, "b": [None, 1.5], "c": "/x"}
    assert [f.name for f in p.parent.iterdir()] == ["summary.json"]
    assert p.stat().st_mode & 0o777 == 0o644


def test_read_summary_errors(tmp_path: Path) -> None:
    with pytest.raises(NoDataError, match="no summary.json"):
        read_summary(tmp_path)
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        read_summary(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"schema": "other/v9"}))
    with pytest.raises(ConfigError, match=r"has schema 'other/v9', expected 'asrtk.result/v1'"):
        read_summary(tmp_path)
    write_json_atomic(tmp_path / "summary.json", summary())
    assert read_summary(tmp_path)["run_id"] == "20261121-220005-callcenter"
    assert read_summary(tmp_path / "summary.json")["schema"] == SCHEMA


def test_validate_summary_reports_missing_keys() -> None:
    assert validate_summary(summary()) == []
    broken = summary()
    del broken["latency_s"]["p95"]
    del broken["loadgen"]
    broken["schema"] = "asrtk.result/v0"
    problems = validate_summary(broken)
    assert "missing key latency_s.p95" in problems
    assert "missing key loadgen" in problems
    assert "missing key loadgen.valid" not in problems  # the parent is reported once
    assert any("schema is 'asrtk.result/v0'" in p for p in problems)


def test_validate_summary_allows_documented_nulls() -> None:
    s = summary(rtf=None, stream=None, server=None)
    s["target"]["server"] = None
    assert validate_summary(s) == []


def test_list_runs_newest_first_and_skips_junk(tmp_path: Path) -> None:
    for run_id, created, passed in (("20261120-100000-tts", "2026-11-20T10:00:00Z", False),
                                    ("20261121-090000-callcenter", "2026-11-21T09:00:00Z", True)):
        d = tmp_path / run_id
        d.mkdir()
        s = summary(run_id=run_id, created=created)
        s["slo"]["passed"] = passed
        write_json_atomic(d / "summary.json", s)
    (tmp_path / "junk").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("[]")
    (tmp_path / "file.txt").write_text("x")
    runs = list_runs(tmp_path)
    assert [r["run_id"] for r in runs] == ["20261121-090000-callcenter", "20261120-100000-tts"]
    assert runs[0]["slo_passed"] is True and runs[1]["slo_passed"] is False
    assert runs[0]["p95"] == 0.3 and runs[0]["rps"] == 1.0 and runs[0]["path"] == tmp_path / runs[0]["run_id"]
    assert list_runs(tmp_path / "missing") == []


def test_csv_round_trip(tmp_path: Path) -> None:
    rows = [{"t_s": 0, "phase": "warmup", "p95_s": 0.25, "errors": 0},
            {"t_s": 1, "phase": "measure", "p95_s": math.nan, "errors": 3, "unexpected": "dropped"}]
    write_csv(tmp_path / "ts.csv", TIMESERIES_COLUMNS, rows)
    header = (tmp_path / "ts.csv").read_text().splitlines()[0]
    assert header == ",".join(TIMESERIES_COLUMNS)
    back = read_csv(tmp_path / "ts.csv")
    assert back[0]["t_s"] == 0 and back[0]["phase"] == "warmup" and back[0]["p95_s"] == 0.25
    assert back[1]["p95_s"] is None and back[1]["errors"] == 3 and back[1]["offered_rps"] is None
    assert read_csv(tmp_path / "absent.csv") == []


def test_telemetry_columns_per_gpu() -> None:
    assert telemetry_columns(0) == ["t_s", "cpu_percent", "cpu_max_core_percent", "mem_used_bytes",
                                    "loadgen_cpu_percent", "target_cpu_cores", "other_cpu_cores", "steal_cpu_cores"]
    cols = telemetry_columns(2)
    assert "gpu1_temp_celsius" in cols and "gpu0_util_ratio" in cols and len(cols) == 8 + 12


def write_hlog(path: Path, per_second: dict[int, list[float]], base_epoch_s: float = 1_763_762_400.0) -> None:
    """Like the bench recorder: BaseTime = run start (epoch), interval timestamps = seconds since it."""
    with open(path, "w") as fh:
        w = HistogramLogWriter(fh)
        w.output_comment(f"[StartTime: {base_epoch_s:.3f} (seconds since epoch)]")
        w.output_base_time(base_epoch_s * 1000.0)
        w.base_time = base_epoch_s * 1000.0
        for t, values in per_second.items():
            h = HdrHistogram(1, 3_600_000_000, 3)
            for v in values:
                h.record_value(int(v * 1e6))
            w.output_interval_histogram(h, float(t) or 0.0, float(t + 1), 1e6)


def test_latency_spectrum_is_exact_and_skips_warmup(tmp_path: Path) -> None:
    measured = {t: [0.001 * (1 + i + 100 * (t - 2)) for i in range(100)] for t in range(2, 12)}  # 1 ms .. 1 s
    warm = {0: [50.0] * 100, 1: [60.0] * 100}  # would dominate every tail percentile
    write_hlog(tmp_path / "latency.hlog", {**warm, **measured})
    spec = latency_spectrum(tmp_path / "latency.hlog", warmup_s=2.0)
    assert spec is not None
    values = dict(spec)
    assert values[0.0] == pytest.approx(0.001, rel=2e-3)
    assert values[50.0] == pytest.approx(0.5, rel=1e-3)  # 3 significant digits
    assert values[99.0] == pytest.approx(0.99, rel=1e-3)
    assert values[99.9] == pytest.approx(0.999, rel=1e-3)
    assert spec[-1] == (100.0, pytest.approx(1.0, rel=1e-3))
    assert all(b[1] >= a[1] for a, b in zip(spec, spec[1:]))  # monotone
    with_warm = latency_spectrum(tmp_path / "latency.hlog", warmup_s=0.0)
    assert with_warm is not None and with_warm[-1][1] == pytest.approx(60.0, rel=1e-3)


def test_latency_spectrum_missing_empty_or_damaged(tmp_path: Path) -> None:
    assert latency_spectrum(tmp_path / "none.hlog") is None
    (tmp_path / "bad.hlog").write_text("0.0,1.0,0.0,HISTFAAAACd4nJNpmSzMwMDAzgABzFCaEURcm7yEw\n")
    assert latency_spectrum(tmp_path / "bad.hlog") is None
    write_hlog(tmp_path / "empty.hlog", {0: []})
    assert latency_spectrum(tmp_path / "empty.hlog") is None


def test_docs_describe_every_summary_key_and_column() -> None:
    from toolkit.results import REQUIRED_KEYS, SERVER_METRICS_COLUMNS, TELEMETRY_COLUMNS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "results.md").read_text()
    for key in REQUIRED_KEYS:
        assert f"`{key.rsplit('.', 1)[-1]}`" in doc, f"docs/results.md does not describe {key}"
    for col in TIMESERIES_COLUMNS + TELEMETRY_COLUMNS + SERVER_METRICS_COLUMNS:
        assert f"`{col}`" in doc, f"docs/results.md lacks column {col}"
    for name in FILES.values():
        assert f"`{name}`" in doc
