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
                            "--listen", "127.0.0.1:9000", "--no-retry-non-idempotent"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "nginx").iterdir()) == ["asrtk.conf", "nginx-standalone.conf"]
    conf = (out / "nginx/asrtk.conf").read_text()
    assert "server 10.0.0.1:8000 weight=3" in conf and "server gpu-a-1" not in conf
    assert "server 10.0.0.2:8000 weight=1 max_fails=3 fail_timeout=10s backup;" in conf
    assert "listen 127.0.0.1:9000;" in conf and "proxy_next_upstream error timeout;" in conf


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
        (["generate", "all", "--hosts", "h:1", "--upstream", "h:2", "--target-qps", "5"], 2, "not both"),
        (["generate", "all", "--hosts", "h:1,h:1", "--target-qps", "5"], 2, "h:1 is already on list item 1"),
        (["generate", "all", "--hosts", "h:1 spare", "--target-qps", "5"], 2, "cannot read 'spare'"),
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


def _csv_plan(tmp_path: Path, *extra: str) -> Path:
    csv = tmp_path / "m.csv"
    csv.write_text("workers,qps,p95_s,error_rate,node\n1,10,0.5,0,gpu-a\n2,20,0.7,0,gpu-a\n4,35,1.2,0.001,gpu-a\n")
    r = runner.invoke(app, ["plan", "--target-qps", "100", "--slo", "p95=1.3s", "--measurements", str(csv),
                            "--out", str(tmp_path / "plan"), *extra])
    assert r.exit_code == 0, r.output
    return tmp_path / "plan/plan.yaml"


def test_reads_the_plan_that_asrtk_plan_writes(tmp_path: Path) -> None:
    """Contract with `asrtk plan`: its plan.yaml feeds the generators without hand edits."""
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("".join(f"10.0.0.{i}:8000\n" for i in range(1, 6)))
    plan = _csv_plan(tmp_path, "--hosts", str(hosts))
    out = tmp_path / "ops"
    r = runner.invoke(app, ["generate", "all", "--plan", str(plan), "--out", str(out)])
    assert r.exit_code == 0, r.output
    conf = (out / "nginx/asrtk.conf").read_text()
    doc = yaml.safe_load(plan.read_text())
    assert [m["address"] for m in doc["fleet"]] == [f"10.0.0.{i}:8000" for i in range(1, 6)]
    for member in doc["fleet"]:
        line = f"server {member['address']} weight={member['weight']} "
        assert line in conf
        assert (f"{line}max_fails=3 fail_timeout=10s backup;" in conf) == member["backup"]
    assert "snapped up to the histogram bucket boundary 1.5 s" in r.stderr


def test_a_plan_without_addresses_is_refused_in_one_line_naming_hosts(tmp_path: Path) -> None:
    plan = _csv_plan(tmp_path)
    assert all(m["address"] is None for m in yaml.safe_load(plan.read_text())["fleet"])
    for kind in ("nginx", "prometheus", "dashboards", "all"):
        out = tmp_path / f"o-{kind}"
        r = runner.invoke(app, ["generate", kind, "--plan", str(plan), "--out", str(out)])
        assert r.exit_code == 2, r.output
        assert r.stderr.startswith(f"error: {kind} needs the servers' addresses") and "--hosts" in r.stderr
        assert r.stderr.count("\n") == 1
        assert not out.exists()
    # the rules hold no address: they do not need an inventory
    r = runner.invoke(app, ["generate", "alerts", "--plan", str(plan), "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output


def test_template_writes_marked_placeholders_only_when_asked(tmp_path: Path) -> None:
    plan = _csv_plan(tmp_path)
    out = tmp_path / "draft"
    r = runner.invoke(app, ["generate", "all", "--plan", str(plan), "--template", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "--template: the server addresses are placeholders" in r.stderr
    conf = (out / "nginx/asrtk.conf").read_text()
    assert "# TEMPLATE (--template)" in conf and "server gpu-a-1.replace-me.invalid:8000 " in conf
    assert conf.count("PLACEHOLDER address") == 5
    prom = (out / "prometheus/prometheus.yml").read_text()
    assert "# TEMPLATE (--template)" in prom and "gpu-a-1.replace-me.invalid:8000" in prom
    assert "TEMPLATE" in (out / "dashboards/asrtk-capacity.json").read_text()
    # with real addresses there is nothing to template
    r = runner.invoke(app, ["generate", "nginx", "--plan", str(plan), "--template", "--hosts",
                            ",".join(f"h{i}:8000" for i in range(5)), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "drop --template" in r.stderr


def test_generate_hosts_are_matched_to_the_plan(tmp_path: Path) -> None:
    plan = _csv_plan(tmp_path)  # 4 active + 1 backup
    out = tmp_path / "ops"
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# rack 3\n10.0.3.1:8000\n10.0.3.2:8000 weight=2\n10.0.3.9:8000 backup\n"
                     "10.0.3.3:8000\n10.0.3.4:8000\n10.0.3.5:8000\n")
    r = runner.invoke(app, ["generate", "nginx", "--plan", str(plan), "--hosts", str(hosts), "--out", str(out)])
    assert r.exit_code == 0, r.output
    conf = (out / "nginx/asrtk.conf").read_text()
    assert "server 10.0.3.9:8000 weight=35 max_fails=3 fail_timeout=10s backup;" in conf
    assert "server 10.0.3.2:8000 weight=2 " in conf and f"from {hosts} line 3, weight from there" in conf
    assert "10.0.3.5" not in conf and "1 host(s) beyond the plan's 5 nodes left out: 10.0.3.5:8000" in r.stderr
    r = runner.invoke(app, ["generate", "nginx", "--plan", str(plan), "--hosts", "h1:8000,h2:8000 backup",
                            "--out", str(tmp_path / "few")])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1
    assert "--hosts list: 2 host(s) given (1 marked backup), the plan needs 5 (4 active + 1 backup): 3 missing (3 active)" in r.stderr


def test_every_derived_limit_has_a_flag(tmp_path: Path, plan_file: Path) -> None:
    out = tmp_path / "ops"
    r = runner.invoke(app, ["generate", "nginx", "--plan", str(plan_file), "--out", str(out), "--max-body", "25MB",
                            "--read-timeout", "2m", "--rate-limit", "90r/s"])
    assert r.exit_code == 0, r.output
    conf = (out / "nginx/asrtk.conf").read_text()
    assert "client_max_body_size 24m;" in conf and "# Largest upload: --max-body 25MB + 64 KiB" in conf
    assert "proxy_read_timeout 120s;" in conf and "--read-timeout 2m, in place of the value derived" in conf
    assert "rate=90r/s;" in conf and "rate = 90r/s (--rate-limit 90r/s, in place of the planned fleet capacity" in conf
    for flag, value, needle in (("--rate-limit", "fast", "--rate-limit must be a whole rate"),
                                ("--read-timeout", "soon", "--read-timeout"),
                                ("--hosts", "nofile", "--hosts nofile: no such file, and")):
        r = runner.invoke(app, ["generate", "nginx", "--plan", str(plan_file), "--out", str(tmp_path / "bad"),
                                flag, value])
        assert r.exit_code == 2 and needle in r.stderr and r.stderr.count("\n") == 1, (flag, r.stderr)


K8S_PLAN = Path(__file__).resolve().parents[2] / "docs" / "examples" / "k8s" / "plan.yaml"
K8S_FLAGS = ["--image", "reg.example/asrtk:1", "--api-key-secret", "asrtk-key", "--memory", "4GiB",
             "--gpus-per-pod", "0", "--cpu", "2"]


def test_k8s_refuses_in_one_line_naming_every_missing_flag(tmp_path: Path) -> None:
    r = runner.invoke(app, ["generate", "k8s", "--plan", str(K8S_PLAN), "--out", str(tmp_path), "--image", "x:1"])
    assert r.exit_code == 2
    line = r.stderr.strip()
    assert "\n" not in line and "--image" not in line.split("needs", 1)[1]
    for flag in ("--api-key-secret", "--memory", "--gpus-per-pod", "--cpu"):
        assert flag in line
    assert not (tmp_path / "k8s").exists()  # nothing half-written


def test_k8s_writes_manifests_without_addresses(tmp_path: Path) -> None:
    r = runner.invoke(app, ["generate", "k8s", "--plan", str(K8S_PLAN), "--out", str(tmp_path), *K8S_FLAGS,
                            "--peak-qps", "475", "--namespace", "speech"])
    assert r.exit_code == 0, r.output
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.yaml"))
    assert written == ["k8s/deployment.yaml", "k8s/grafana-dashboards.yaml", "k8s/hpa.yaml", "k8s/pdb.yaml",
                       "k8s/prometheusrule.yaml", "k8s/service.yaml", "k8s/servicemonitor.yaml",
                       "prometheus-adapter/config.yaml"]
    dep = yaml.safe_load((tmp_path / "k8s" / "deployment.yaml").read_text())
    res = dep["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"]["cpu"] == "2000m" and "nvidia.com/gpu" not in res["limits"]
    assert "no GPU (--gpus-per-pod 0" in (tmp_path / "k8s" / "deployment.yaml").read_text()
    assert "max_body_bytes" not in r.stderr  # nginx-only defaults are not reported for k8s


def test_k8s_flags_are_refused_for_other_kinds_and_all_says_it_left_k8s_out(tmp_path: Path) -> None:
    r = runner.invoke(app, ["generate", "nginx", "--plan", str(K8S_PLAN), "--template", "--out", str(tmp_path),
                            "--memory", "4GiB"])
    assert r.exit_code == 2 and "generate k8s" in r.stderr
    r = runner.invoke(app, ["generate", "all", "--plan", str(K8S_PLAN), "--template", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "k8s/ not written: add --image" in r.stderr and not (tmp_path / "k8s").exists()
    r = runner.invoke(app, ["generate", "all", "--plan", str(K8S_PLAN), "--template", "--out", str(tmp_path),
                            *K8S_FLAGS])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "k8s" / "hpa.yaml").is_file() and (tmp_path / "nginx" / "asrtk.conf").is_file()


@pytest.mark.parametrize(("flag", "value", "needle"), [
    ("--cpu", "lots", "--cpu must be cores"),
    ("--gpus-per-pod", "-1", "--gpus-per-pod must be >= 0"),
    ("--api-key-secret", "Not_A_Name", "--api-key-secret must be a Kubernetes name"),
    ("--redis-url", "http://x", "--redis-url must be redis://"),
    ("--monitor-label", "release", "--monitor-label must be KEY=VALUE"),
    ("--peak-qps", "10", "--peak-qps 10 is below the plan's target"),
])
def test_k8s_bad_flags(flag: str, value: str, needle: str, tmp_path: Path) -> None:
    args = [a for a in K8S_FLAGS]
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    r = runner.invoke(app, ["generate", "k8s", "--plan", str(K8S_PLAN), "--out", str(tmp_path), *args])
    assert r.exit_code == 2, r.output
    assert needle in r.stderr
