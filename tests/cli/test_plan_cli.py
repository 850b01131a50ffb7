"""`asrtk plan` and `asrtk sweep` argument handling: exit codes and one-line messages."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from toolkit.cli.main import app

runner = CliRunner()

CSV = """workers,qps,p95_s,error_rate,node
1,10,0.5,0,gpu-a
1,20,0.9,0,gpu-a
1,30,1.8,0,gpu-a
2,20,0.4,0,gpu-a
2,40,0.8,0,gpu-a
2,60,2.0,0.005,gpu-a
"""


def _step(i: int, rps: float, p95: float, final: str = "pass") -> dict:
    return {"index": i, "load": rps, "offered_rps": rps, "achieved_rps": rps, "concurrency": rps * p95 / 2,
            "requests": int(rps * 20), "error_rate": 0.0, "final": final, "verdict": final, "phase": "bracket",
            "latency_s": {"mean": p95 / 2, "p50": p95 / 2, "p90": p95 * 0.9, "p95": p95, "p99": p95 * 1.2,
                          "max": p95 * 1.5}}


def _capacity(created: str) -> dict:
    return {
        "schema": "asrtk.capacity/v1", "created": created, "mode": "rate", "sweep_id": created,
        "scenario": {"name": "emotion", "route": "/api/v1/analyze"},
        "target": {"url": "http://127.0.0.1:1", "embedded": True, "server": {"preset": "tiny", "workers": 1}},
        "slo": {"percentile": 0.95, "latency_s": 0.8, "max_error_rate": 0.01},
        "steps": [_step(0, 2, 0.1), _step(1, 4, 0.2), _step(2, 8, 1.5, "fail"), _step(3, 6, 0.5)],
        "result": {"status": "converged", "max_rps_at_slo": 6.0, "ci_rps": [5.0, 8.0]},
        "service_time_s": {"mean": 0.05, "cv2": 0.2, "source": "test"},
        "request": {"max_body_bytes": 384044, "streaming": False},
    }


def test_plan_without_data_says_how_to_get_it(tmp_path: Path) -> None:
    r = runner.invoke(app, ["plan", "--target-qps", "10", "--results", str(tmp_path / "none"),
                            "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "asrtk sweep --scenario" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_plan_needs_target_qps(tmp_path: Path) -> None:
    r = runner.invoke(app, ["plan", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--target-qps" in r.stderr


def test_plan_from_csv_writes_plan_files(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text(CSV)
    r = runner.invoke(app, ["plan", "--target-qps", "300", "--slo", "p95=1.5s", "--measurements", str(csv),
                            "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load((tmp_path / "out" / "plan.yaml").read_text())
    assert doc["schema"] == "asrtk.plan/v1"
    assert doc["recommended"]["node_type"] == "gpu-a" and doc["recommended"]["workers_per_node"] == 2
    md = (tmp_path / "out" / "plan.md").read_text()
    assert "| node type | workers | QPS at SLO |" in md and "One node vs the cluster" in md
    html = (tmp_path / "out" / "plan.html").read_text()
    assert "<table>" in html and "model" in html
    assert "recommended" in r.stdout


def test_plan_uses_latest_sweep_and_says_which(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for name, created in (("sweep-a", "2026-11-20T10:00:00Z"), ("sweep-b", "2026-11-21T10:00:00Z")):
        (results / name).mkdir(parents=True)
        (results / name / "capacity.json").write_text(json.dumps(_capacity(created)))
    r = runner.invoke(app, ["plan", "--target-qps", "20", "--results", str(results), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "sweep-b" in r.stdout
    doc = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    assert doc["slo"]["latency_s"] == 0.8  # taken from the sweep
    assert doc["node_types"][0]["capacity_rps"] == 6.0 and doc["node_types"][0]["capacity_basis"] == "search"
    assert doc["target"]["route"] == "/api/v1/analyze" and doc["request"]["max_body_bytes"] == 384044
    assert doc["expected"]["p95_s_model"] is not None


def test_plan_unreachable_slo_exits_3(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text(CSV)
    r = runner.invoke(app, ["plan", "--target-qps", "30", "--slo", "p95=100ms", "--measurements", str(csv),
                            "--out", str(tmp_path)])
    assert r.exit_code == 3
    assert "no node type meets the SLO" in r.stderr


def test_plan_over_budget_exits_3(tmp_path: Path) -> None:
    cap = tmp_path / "capacity.json"
    cap.write_text(json.dumps(_capacity("2026-11-21T10:00:00Z")))
    r = runner.invoke(app, ["plan", "--target-qps", "100", "--node", f"t4={cap}:2.5", "--max-cost-per-hour", "5",
                            "--out", str(tmp_path)])
    assert r.exit_code == 3
    assert "budget" in r.stderr and "--max-cost-per-hour" in r.stderr


def test_plan_bad_flags_exit_2(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text(CSV)
    base = ["plan", "--target-qps", "30", "--measurements", str(csv), "--out", str(tmp_path)]
    for extra, needle in ((["--slo", "fast"], "p95=2s"), (["--slo", "p95=1.5s", "--headroom", "2"], "headroom"),
                          (["--slo", "p95=1.5s", "--max-error-rate", "x"], "ratio"),
                          (["--slo", "p95=1.5s", "--node", "nofile"], "NAME=FILE")):
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2, (extra, r.output)
        assert needle in r.stderr


def test_plan_bad_capacity_file_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "capacity.json"
    bad.write_text('{"schema": "asrtk.capacity/v1"}')
    r = runner.invoke(app, ["plan", "--target-qps", "5", "--capacity", str(bad), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "missing key" in r.stderr
    r = runner.invoke(app, ["plan", "--target-qps", "5", "--capacity", str(tmp_path / "x.json"),
                            "--out", str(tmp_path)])
    assert r.exit_code == 2 and "not found" in r.stderr


def test_validate_missing_plan_exit_2(tmp_path: Path) -> None:
    r = runner.invoke(app, ["plan", "validate", str(tmp_path / "plan.yaml")])
    assert r.exit_code == 2 and "not found" in r.stderr


def test_sweep_usage_errors_exit_2() -> None:
    cases = (
        (["sweep", "-s", "emotion", "--mode", "qps"], "--mode"),
        (["sweep", "-s", "emotion", "--workers", "1,2", "--target", "http://127.0.0.1:9"], "--workers"),
        (["sweep", "-s", "emotion", "--workers", "0"], "--workers"),
        (["sweep", "-s", "emotion", "--slo", "p95"], "p95=2s"),
        (["sweep", "-s", "emotion", "--step-duration", "soon"], "--step-duration"),
        (["sweep", "-s", "emotion", "--growth", "1"], "growth"),
        (["sweep", "-s", "no-such-scenario"], "no-such-scenario"),
    )
    for args, needle in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.stderr, (args, r.stderr)


def test_help_shows_examples() -> None:
    for cmd in (["sweep", "--help"], ["plan", "--help"], ["plan", "validate", "--help"]):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 0 and "asrtk" in r.stdout


PUBLISHED = "workers,users,qps,p95_s,error_rate\n1,8,11,0.62,0\n2,16,21,0.71,0\n4,32,39,0.95,0\n4,64,33,2.8,3%\n"


def test_plan_from_a_published_table_with_an_inventory(tmp_path: Path) -> None:
    csv = tmp_path / "article.csv"
    csv.write_text(PUBLISHED)
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("".join(f"10.1.0.{i}:8000\n" for i in range(1, 6)))
    r = runner.invoke(app, ["plan", "--target-qps", "100", "--slo", "p95=1.5s", "--measurements", str(csv),
                            "--hosts", str(hosts), "--max-body", "20MB", "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load((tmp_path / "out" / "plan.yaml").read_text())
    assert doc["recommended"]["workers_per_node"] == 4 and doc["node_types"][0]["capacity_basis"] == "knee"
    assert (doc["recommended"]["active_nodes"], doc["recommended"]["backup_nodes"]) == (4, 1)
    assert [(f["address"], f["backup"]) for f in doc["fleet"]] == [
        (f"10.1.0.{i}:8000", i == 5) for i in range(1, 6)]
    assert doc["request"] == {"max_body_bytes": 20_000_000}
    assert doc["sources"]["request.max_body_bytes"] == "asrtk plan --max-body 20MB"
    assert doc["sources"]["fleet"] == f"--hosts {hosts}"
    assert any(f"{csv} line 5: 4 workers, 64 users, 33 rps) is past the knee" in n for n in doc["notes"])
    assert "line 4: 4 workers, 32 users" in r.stdout


def test_plan_with_too_few_hosts_says_how_many_are_missing(tmp_path: Path) -> None:
    csv = tmp_path / "article.csv"
    csv.write_text(PUBLISHED)
    r = runner.invoke(app, ["plan", "--target-qps", "100", "--slo", "p95=1.5s", "--measurements", str(csv),
                            "--hosts", "10.1.0.1:8000,10.1.0.2:8000", "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert r.stderr.count("\n") == 1
    assert "the plan needs 5 (4 active + 1 backup): 3 missing" in r.stderr
    assert not (tmp_path / "out" / "plan.yaml").exists()
    r = runner.invoke(app, ["plan", "--target-qps", "100", "--slo", "p95=1.5s", "--measurements", str(csv),
                            "--hosts", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "no such file" in r.stderr
