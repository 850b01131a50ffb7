"""`asrtk plan validate` of a plan made with --hit-rate: refusals (exit 2) before any load, and the
verdict's exit code and hit-ratio lines (the run itself replaced by a judged fake summary)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from toolkit.cli.main import app

runner = CliRunner()

CSV = "workers,qps,p95_s,error_rate\n1,10,0.5,0\n1,40,0.8,0\n1,80,3.0,0\n"


@pytest.fixture
def cached_plan(tmp_path: Path) -> Path:
    csv = tmp_path / "m.csv"
    csv.write_text(CSV)
    r = runner.invoke(app, ["plan", "--target-qps", "30", "--slo", "p95=2s", "--measurements", str(csv),
                            "--hit-rate", "45%", "--hit-cost", "0.3", "--redundancy", "0", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    return tmp_path / "plan.yaml"


def test_a_cached_plan_needs_a_scenario_with_repeated_requests(cached_plan: Path) -> None:
    r = runner.invoke(app, ["plan", "validate", str(cached_plan), "--scenario", "tts"])
    assert r.exit_code == 2, r.output
    line = r.stderr.strip()
    assert "\n" not in line and "sized for a 45% cache hit rate" in line
    assert "scenario 'tts' sends no repeated requests: pass --scenario with a repeat: block" in line


def test_cache_is_for_the_embedded_server_only(cached_plan: Path) -> None:
    r = runner.invoke(app, ["plan", "validate", str(cached_plan), "--scenario", "tts", "--cache", "memory",
                            "--target", "http://127.0.0.1:9"])
    assert r.exit_code == 2 and "--cache configures the embedded server" in r.stderr


def _judged(cached_plan: Path, tmp_path: Path, p95: float, server: float | None, client: float | None):
    from toolkit.capacity.validation import judge_validation

    doc = yaml.safe_load(cached_plan.read_text())
    summary = {"load": {"offered_rps": 30.0}, "throughput": {"rps": 30.0}, "requests": {"error_rate": 0.0},
               "latency_s": {"p50": p95 / 3, "p95": p95, "p99": p95 * 1.2},
               "cache": {"client": {"hit_ratio": client}, "server": {"hit_ratio": server},
                         "expected": {"hit_ratio": 0.44}}}
    return judge_validation(doc, summary, 0.2, tmp_path)


@pytest.mark.parametrize(("p95", "server", "client", "code", "verdict"), [
    (0.05, 0.46, 0.45, 0, "pass"),   # at the planned hit rate, well within the prediction
    (1.9, 0.44, 0.44, 3, "fail"),    # at the planned hit rate, far above it
    (0.05, 0.10, 0.11, 4, "inconclusive"),  # another hit rate: neither
    (1.9, 0.90, 0.90, 4, "inconclusive"),
])
def test_the_exit_code_is_the_verdict_and_the_hit_ratios_are_printed(
        cached_plan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        p95: float, server: float, client: float, code: int, verdict: str) -> None:
    import toolkit.runs.validate as runs_validate

    v = _judged(cached_plan, tmp_path, p95, server, client)
    assert v.verdict == verdict
    monkeypatch.setattr(runs_validate, "run_validation", lambda *a, **kw: v)
    r = runner.invoke(app, ["plan", "validate", str(cached_plan), "--scenario", "tts"])
    assert r.exit_code == code, r.output
    out = " ".join(r.stdout.split())
    assert (f"cache hit ratio: planned 45.0%, measured {client:.1%} (client X-Cache), {server:.1%} (server counters);"
            " the scenario's expectation 44.0%") in out
    assert "per node at the planned 45.0%: capacity 98.9 rps at the SLO (67.7 rps at 0%" in out
    assert "planned load 30 rps" in out and "held 30 rps" in out
    if verdict == "inconclusive":
        assert f"sized for a 45% hit rate, the run measured {server:.1%}" in r.stderr
    j = runner.invoke(app, ["plan", "validate", str(cached_plan), "--scenario", "tts", "--json"])
    assert j.exit_code == code
    d = json.loads(j.stdout.strip().splitlines()[-1])
    assert d["verdict"] == verdict and d["cache"]["hit_rate_planned"] == 0.45
    assert (d["cache"]["hit_ratio_server"], d["cache"]["hit_ratio_client"]) == (server, client)
