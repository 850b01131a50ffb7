"""Every built-in scenario, briefly, against ONE shared reference server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import latency_server as ls
from toolkit.resources import data_dir
from toolkit.results import validate_summary
from toolkit.scenario import builtin_names

pytestmark = pytest.mark.integration


def _meeting_short(tmp_path: Path) -> Path:
    """The meeting scenario with 2-4 s turns: real-time streams of its longer audio cannot
    finish inside a 5 s test run."""
    data = yaml.safe_load((data_dir("scenarios") / "meeting.yaml").read_text())
    data["audio"].update({"median_s": 3, "min_s": 2, "max_s": 4})
    p = tmp_path / "meeting.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_scenario_runs_and_writes_a_valid_summary(name: str, reference_server_url: str,
                                                         tmp_path: Path) -> None:
    scenario = str(_meeting_short(tmp_path)) if name == "meeting" else name
    duration = "6" if name == "meeting" else "4"
    out = tmp_path / "res"
    r = ls.run_bench(["-s", scenario, "--target", reference_server_url, "--duration", duration,
                      "--warmup", "1", "--out", str(out), "--no-fail-on-slo"], timeout_s=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run = ls.run_dir(out)
    s = json.loads((run / "summary.json").read_text())
    assert validate_summary(s) == []
    assert s["complete"] is True and s["target"]["embedded"] is False
    assert s["requests"]["ok"] > 0, s["requests"]
    assert s["requests"]["errors"] == 0, s["requests"]["by_class"]
    assert s["latency_s"]["p50"] > 0 and s["latency_s"]["p99"] >= s["latency_s"]["p50"]
    assert s["server"]["scraped"] == [reference_server_url + "/metrics"]
    for f in ("summary.json", "timeseries.csv", "latency.hlog", "telemetry.csv", "server_metrics.csv",
              "report.html", "report.md"):
        assert (run / f).is_file(), f
    if name == "meeting":
        assert s["stream"]["partial_latency_s"]["count"] > 0
        assert s["stream"]["final_latency_s"]["count"] == s["requests"]["ok"]
    if name in ("callcenter", "mobile", "emotion", "funasr"):
        assert s["rtf"]["p50"] > 0
    assert "report:" in r.stdout
