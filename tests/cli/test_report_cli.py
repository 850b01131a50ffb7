"""`asrtk report DIR` and `asrtk results list`: outputs, exit codes and messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from toolkit.cli.main import app
from toolkit.results import FILES, SCHEMA, TIMESERIES_COLUMNS, write_csv, write_json_atomic

runner = CliRunner()


def make_run(out: Path, run_id: str, created: str, *, passed: bool = True, complete: bool = True) -> Path:
    d = out / run_id
    d.mkdir(parents=True)
    summary: dict[str, Any] = {
        "schema": SCHEMA, "run_id": run_id, "asrtk_version": "0.1.0", "created": created, "complete": complete,
        "incomplete_reason": None if complete else "interrupted",
        "scenario": {"name": run_id.split("-", 2)[2], "source": "builtin", "protocol": "recognize", "seed": 1},
        "target": {"url": "http://127.0.0.1:9", "embedded": False, "server": None},
        "load": {"mode": "open", "offered_rps": 2.0, "achieved_rps": 2.0, "users": None, "processes": 1,
                 "stages": []},
        "duration_s": 5.0, "warmup_s": 1.0,
        "requests": {"total": 10, "ok": 10, "errors": 0, "error_rate": 0.0, "late_starts": 0, "by_class": {}},
        "throughput": {"rps": 2.0, "audio_s_per_s": 10.0, "bytes_sent_per_s": 1e5, "bytes_received_per_s": 1e2},
        "latency_s": {"count": 10, "min": 0.1, "mean": 0.2, "p50": 0.2, "p90": 0.25, "p95": 0.25, "p99": 0.3,
                      "p999": 0.3, "max": 0.3},
        "rtf": None, "stream": None, "slo": {"passed": passed, "checks": []},
        "loadgen": {"valid": True, "warnings": [], "processes": 1, "cpu_max_percent": 10.0,
                    "schedule_lag_p50_s": 0.0, "schedule_lag_p99_s": 0.001, "schedule_lag_max_s": 0.001},
        "gpu": {"available": False, "reason": "no NVML", "devices": []},
        "host": {"cores": 2, "cpu_mean_percent": 10.0, "cpu_max_percent": 20.0, "memory_used_max_bytes": 1e9},
        "server": None, "files": dict(FILES),
    }
    write_json_atomic(d / FILES["summary"], summary)
    write_csv(d / FILES["timeseries"], TIMESERIES_COLUMNS,
              [{"t_s": t, "phase": "measure", "offered_rps": 2, "achieved_rps": 2, "p95_s": 0.25} for t in range(6)])
    return d


def test_report_renders_both_files(tmp_path: Path) -> None:
    run = make_run(tmp_path, "20261121-220000-mobile", "2026-11-21T22:00:00Z")
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.stdout and "report.md" in result.stdout
    assert (run / "report.html").stat().st_size > 1_000_000  # plotly inlined: opens offline
    assert "**SLO PASS**" in (run / "report.md").read_text()


def test_report_on_a_directory_without_summary_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no summary.json in ")
    assert "asrtk results list" in result.stderr


def test_report_on_a_foreign_summary_exits_2(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"schema": "locust/v1"}))
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "has schema 'locust/v1', expected 'asrtk.result/v1'" in result.stderr


def test_results_list_newest_first(tmp_path: Path) -> None:
    make_run(tmp_path, "20261120-080000-callcenter", "2026-11-20T08:00:00Z", passed=False)
    make_run(tmp_path, "20261121-080000-mobile", "2026-11-21T08:00:00Z", complete=False)
    result = runner.invoke(app, ["results", "list", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("20261121-080000-mobile") < out.index("20261120-080000-callcenter")
    assert "FAIL" in out and "INCOMPLETE" in out and "250 ms" in out


def test_results_list_json(tmp_path: Path) -> None:
    make_run(tmp_path, "20261121-080000-tts", "2026-11-21T08:00:00Z")
    result = runner.invoke(app, ["results", "list", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0
    runs = json.loads(result.stdout)
    assert [r["run_id"] for r in runs] == ["20261121-080000-tts"]
    assert runs[0]["p95"] == 0.25 and runs[0]["slo_passed"] is True


def test_results_list_empty_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["results", "list", "--out", str(tmp_path / "nothing")])
    assert result.exit_code == 0
    assert "no runs under" in result.stderr and "asrtk bench" in result.stderr


def test_results_without_subcommand_shows_help() -> None:
    result = runner.invoke(app, ["results"])
    assert result.exit_code == 2  # no_args_is_help: a usage error, with the help text
    assert "list" in result.output
