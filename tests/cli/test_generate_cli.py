"""`asrtk generate` and `asrtk gpu-exporter` through the real Typer app: files, notes, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from toolkit import nvml
from toolkit.cli.main import app

runner = CliRunner()

PLAN = {
    "schema": "asrtk.plan/v1",
    "target": {"qps": 300.0, "route": "/recognize"},
    "slo": {"percentile": 0.95, "latency_s": 1.3, "max_error_rate": 0.01},
    "node_types": [{"name": "gpu-a", "capacity_rps": 55.0}],
    "fleet": [
        {"name": "gpu-a-1", "node_type": "gpu-a", "address": "gpu-a-1:8000", "weight": 55},
        {"name": "gpu-a-2", "node_type": "gpu-a", "address": "gpu-a-2:8000", "weight": 55, "backup": True},
    ],
    "latency_s": {"p50": 0.4, "p99": 1.6, "max": 2.5},
    "request": {"max_body_bytes": 19200044, "streaming": True},
}


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    p = tmp_path / "plan.yaml"
    p.write_text(yaml.safe_dump(PLAN))
    return p


def test_all_from_plan_writes_every_artifact(plan_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "ops"
    r = runner.invoke(app, ["generate", "all", "--plan", str(plan_file), "--out", str(out)])
    assert r.exit_code == 0, r.output
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "alerts/asrtk-rules.test.yml", "alerts/asrtk-rules.yml",
        "dashboards/asrtk-capacity.json", "dashboards/asrtk-gpu.json", "dashboards/asrtk-service.json",
        "nginx/asrtk.conf", "nginx/nginx-standalone.conf", "prometheus/prometheus.yml",
    ]
    assert "snapped up to the histogram bucket boundary 1.5 s" in r.stderr
    conf = (out / "nginx/asrtk.conf").read_text()
    assert "location /ws/" in conf and "backup;" in conf


def test_single_kind_and_flag_overrides(plan_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "n"
    r = runner.invoke(app, ["generate", "nginx", "--plan", str(plan_file), "--out", str(out),
                            "--upstream", "10.0.0.1:8000:3", "--backup", "10.0.0.2:8000",
                            "--listen", "127.0.0.1:9000", "--retry-non-idempotent"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "nginx").iterdir()) == ["asrtk.conf", "nginx-standalone.conf"]
    conf = (out / "nginx/asrtk.conf").read_text()
    assert "server 10.0.0.1:8000 weight=3" in conf and "server gpu-a-1" not in conf
    assert "server 10.0.0.2:8000 weight=1 max_fails=3 fail_timeout=10s backup;" in conf
    assert "listen 127.0.0.1:9000;" in conf and "non_idempotent;" in conf


def test_flags_without_plan_and_defaults_note(tmp_path: Path) -> None:
    r = runner.invoke(app, ["generate", "prometheus", "--upstream", "h1:8000", "--upstream", "h2:8000",
                            "--target-qps", "50", "--loadgen", "lg:8089", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load((tmp_path / "prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert jobs["asrtk"]["static_configs"][0]["targets"] == ["h1:8000", "h2:8000"]
    assert jobs["asrtk-gpu"]["static_configs"][0]["targets"] == ["h1:9400", "h2:9400"]
    assert jobs["asrtk-loadgen"]["static_configs"][0]["targets"] == ["lg:8089"]
    assert "note: defaults used for planned_capacity_rps" in r.stderr


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["generate", "all"], 2, "give --plan plan.yaml"),
        (["generate", "all", "--plan", "/nonexistent/plan.yaml"], 2, "plan file /nonexistent/plan.yaml not found"),
        (["generate", "all", "--upstream", "h:1"], 2, "--target-qps is required"),
        (["generate", "all", "--upstream", "nohost", "--target-qps", "5"], 2, "is not HOST:PORT"),
        (["generate", "all", "--upstream", "h:1", "--target-qps", "5", "--slo", "fast"], 2, "--slo must look like p95=2s"),
        (["generate", "all", "--upstream", "h:1", "--target-qps", "5", "--max-error-rate", "7x"], 2, "--max-error-rate"),
        (["generate", "all", "--upstream", "h:1", "--target-qps", "5", "--scrape-interval-s", "0"], 2,
         "--scrape-interval-s"),
        (["generate", "bogus"], 2, ""),
    ],
)
def test_usage_errors(args: list[str], code: int, message: str, tmp_path: Path) -> None:
    r = runner.invoke(app, [*args, "--out", str(tmp_path)] if args[1] != "bogus" else args)
    assert r.exit_code == code, r.output
    if message:
        assert r.stderr.startswith("error: ") and message in r.stderr
        assert r.stderr.count("\n") == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "content, message",
    [
        ("target: [unclosed\n", "not valid YAML at line"),
        ("- just\n- a list\n", "expected a mapping"),
        ("schema: asrtk.plan/v1\nfleet: [{address: 'h:1'}]\n", "target.qps is missing"),
        ("target: {qps: 10}\nfleet: [{address: 'h:1', weight: 0}]\n", "fleet[0].weight must be an integer >= 1"),
    ],
)
def test_bad_plan_files(content: str, message: str, tmp_path: Path) -> None:
    p = tmp_path / "plan.yaml"
    p.write_text(content)
    r = runner.invoke(app, ["generate", "all", "--plan", str(p), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert message in r.stderr and str(p) in r.stderr


def test_gpu_exporter_without_driver_says_so_in_one_line() -> None:
    try:
        nvml.device_count()
    except nvml.NvmlUnavailable as exc:
        reason = str(exc)
    else:
        pytest.skip("this machine has an NVIDIA driver: the no-driver path cannot run here")
    r = runner.invoke(app, ["gpu-exporter", "--port", "0"])
    assert r.exit_code == 1
    assert r.stderr == f"error: no GPU to export: {reason}\n"
    assert r.stdout == ""


def test_reads_the_plan_that_asrtk_plan_writes(tmp_path: Path) -> None:
    """Contract with `asrtk plan`: its plan.yaml feeds the generators without hand edits."""
    csv = tmp_path / "m.csv"
    csv.write_text("workers,qps,p95_s,error_rate,node\n1,10,0.5,0,gpu-a\n2,20,0.7,0,gpu-a\n4,35,1.2,0.001,gpu-a\n")
    r = runner.invoke(app, ["plan", "--target-qps", "100", "--slo", "p95=1.3s", "--measurements", str(csv),
                            "--out", str(tmp_path / "plan")])
    assert r.exit_code == 0, r.output
    out = tmp_path / "ops"
    r = runner.invoke(app, ["generate", "all", "--plan", str(tmp_path / "plan/plan.yaml"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    conf = (out / "nginx/asrtk.conf").read_text()
    plan = yaml.safe_load((tmp_path / "plan/plan.yaml").read_text())
    for member in plan["fleet"]:
        line = f"server {member['address']} weight={member['weight']} "
        assert line in conf
        assert (f"{line}max_fails=3 fail_timeout=10s backup;" in conf) == member["backup"]
    assert "snapped up to the histogram bucket boundary 1.5 s" in r.stderr
