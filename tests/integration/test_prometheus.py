"""Generated Prometheus config, rules and dashboards with the real promtool and Prometheus.

- `promtool check config` / `check rules` clean and `promtool test rules` passing for several specs;
- a real Prometheus (loopback, tmp storage, 1 s scrapes) scraping a live reference server under
  load and a GPU exporter fed with recorded samples: every rule evaluates healthy, every dashboard
  panel and variable query returns data; every metric a rule or panel reads exists in /metrics.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from toolkit import generators
from toolkit.generators import dashboards, rules
from toolkit.generators import spec as S
from toolkit.gpu_exporter import METRIC_NAMES as DCGM_NAMES
from toolkit.gpu_exporter import GpuCollector
from toolkit.nvml import GpuSample

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (PROMTOOL and PROMETHEUS), reason="promtool / prometheus are not installed"),
]

SPECS: dict[str, Callable[[], S.OpsSpec]] = {
    "defaults": S.default_spec,
    "snapped-p95": lambda: S.from_flags(["10.0.0.1:8000:3", "10.0.0.2:8000:1"], ["10.0.0.3:8000"],
                                        target_qps=300, slo="p95=1.3s", max_error_rate="1%"),
    "p99-strict-errors": lambda: S.from_flags(["gpu-1:8000"], target_qps=2.5, slo="p99=800ms",
                                              max_error_rate="0.1%"),
    "p80-loose": lambda: S.from_flags(["[::1]:8000", "h:9"], target_qps=40, slo="p80=4s", max_error_rate="5%"),
    "plan": lambda: S.from_plan({
        "target": {"qps": 300.0, "route": "/api/v1/analyze"}, "slo": {"percentile": 0.95, "latency_s": 1.5},
        "node_types": [{"name": "gpu-a", "capacity_rps": 55.0}],
        "fleet": [{"name": "gpu-a-1", "node_type": "gpu-a", "address": "gpu-a-1:8000", "weight": 55}],
    }).with_overrides(loadgen_targets=("lg:8089",), runbook_url="https://runbooks.example/asrtk"),
}


def _promtool(*args: str, cwd: Path) -> str:
    r = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)  # type: ignore[list-item]
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    return out


@pytest.mark.parametrize("name", sorted(SPECS))
def test_promtool_check_config_rules_and_unit_tests(name: str, tmp_path: Path) -> None:
    for rel, text in generators.generate("all", SPECS[name]()).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    out = _promtool("check", "config", "prometheus/prometheus.yml", cwd=tmp_path)
    assert "SUCCESS" in out and "1 rule files found" in out
    out = _promtool("check", "rules", f"alerts/{rules.RULES_FILE}", cwd=tmp_path)
    assert "SUCCESS" in out
    out = _promtool("test", "rules", rules.TESTS_FILE, cwd=tmp_path / "alerts")
    assert "SUCCESS" in out


def test_promtool_tests_fail_when_a_rule_drifts_from_its_tests(tmp_path: Path) -> None:
    """Control: the generated tests really exercise the thresholds."""
    spec = S.default_spec()
    (tmp_path / rules.TESTS_FILE).write_text(rules.render_tests(spec))
    broken = rules.render_rules(spec).replace("instance_model:asrtk_queue_utilization:ratio{job=\"asrtk\"} > 0.8",
                                              "instance_model:asrtk_queue_utilization:ratio{job=\"asrtk\"} > 0.95")
    assert broken != rules.render_rules(spec)
    (tmp_path / rules.RULES_FILE).write_text(broken)
    r = subprocess.run([PROMTOOL, "test", "rules", rules.TESTS_FILE], cwd=tmp_path,  # type: ignore[list-item]
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "AsrtkQueueSaturated" in r.stdout + r.stderr


# -- live Prometheus ------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RECORDED_GPU = [
    GpuSample(index=0, name="NVIDIA H100 80GB HBM3", uuid="GPU-4b4f2a9e-1c1d-4c3e-9a2b-0d3f5e6a7b8c",
              utilization_ratio=0.87, memory_used_bytes=61_440 * 2**20, memory_total_bytes=81_559 * 2**20,
              power_watts=512.3, sm_clock_hz=1_980e6, temperature_celsius=61.0),
]


@pytest.fixture
def gpu_exporter_port() -> Iterator[int]:
    """An exporter on loopback serving recorded samples (no NVIDIA driver here)."""
    from prometheus_client import CollectorRegistry

    from toolkit.gpu_exporter import serve_metrics

    reg = CollectorRegistry()
    reg.register(GpuCollector(lambda: RECORDED_GPU, hostname="127.0.0.1"))
    server = serve_metrics(reg, "127.0.0.1", 0, None)  # what `asrtk gpu-exporter` serves with
    try:
        yield server.server_port
    finally:
        server.shutdown()


class Load:
    """Background client: good /recognize requests plus a few bad ones (rejections), bounded."""

    def __init__(self, url: str, clip: bytes, max_requests: int = 5000) -> None:
        self.url, self.clip, self.max_requests = url, clip, max_requests
        self.stop = threading.Event()
        self.codes: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10.0, trust_env=False) as c:
            for i in range(self.max_requests):
                if self.stop.is_set():
                    return
                if i % 10 == 5:
                    r = c.post(self.url + "/recognize", files={"file": ("bad.wav", b"not audio", "audio/wav")})
                else:
                    r = c.post(self.url + "/recognize", files={"file": ("a.wav", self.clip, "audio/wav")})
                self.codes.append(r.status_code)
                time.sleep(0.02)

    def __enter__(self) -> "Load":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=15)


class Prometheus:
    def __init__(self, tmp: Path, config: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "prometheus.log"
        self.cmd = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(timeout=10.0, trust_env=False)

    def __enter__(self) -> "Prometheus":
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,  # type: ignore[arg-type]
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_for(lambda: self.client.get(self.url + "/-/ready").status_code == 200, 30, "ready")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def wait_for(self, cond: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if cond():
                    return
            except (httpx.HTTPError, KeyError, IndexError):
                pass
            assert time.monotonic() < deadline, f"Prometheus: {what} not reached within {timeout_s:.0f} s"
            time.sleep(0.5)

    def query(self, expr: str) -> dict:
        r = self.client.get(self.url + "/api/v1/query", params={"query": expr})
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", (expr, body)
        return body["data"]

    def label_values(self, label: str, match: str) -> list[str]:
        r = self.client.get(f"{self.url}/api/v1/label/{label}/values", params={"match[]": match})
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]


def _substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", "15s").replace("${datasource}", "")
    for k in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${k}", values[k])
    assert "$" not in expr, expr
    return expr


def _live_names(url: str) -> set[str]:
    text = httpx.get(url + "/metrics", timeout=5.0, trust_env=False).text
    return {m.group(1) for m in re.finditer(r"^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]", text, re.M)}


@pytest.fixture(scope="module")
def cached_server_url(asrtk_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A reference server with --cache: the cache panels and rules need its series (the session server has none)."""
    from reference_server.launcher import EmbeddedServer

    srv = EmbeddedServer("tiny", extra_args=["--cache", "memory:8MiB"], ready_timeout_s=300,
                         log_path=tmp_path_factory.mktemp("cached") / "server.log")
    srv.start()
    try:
        yield srv.url
    finally:
        srv.stop()


def test_live_prometheus_scrapes_and_every_panel_and_rule_has_data(
    cached_server_url: str, gpu_exporter_port: int, tmp_path: Path, audio_clip: Callable[..., bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    reference_server_url = cached_server_url
    address = reference_server_url.removeprefix("http://")
    spec = S.from_flags([address], target_qps=20).with_overrides(
        scrape_interval_s=1, gpu_exporter_port=gpu_exporter_port)
    assert spec.upstreams[0].host == "127.0.0.1"
    for rel, text in generators.generate("all", spec).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)

    with Load(reference_server_url, audio_clip(0.5)) as load, Prometheus(tmp_path, tmp_path / "prometheus/prometheus.yml") as prom:
        prom.wait_for(lambda: len(prom.query("up == 1")["result"]) == 2, 30, "both targets up")
        prom.wait_for(lambda: bool(prom.query(
            f'rate(asrtk_requests_total{{job="asrtk",status="200"}}[15s]) > 0')["result"]), 30, "a non-zero rate")
        prom.wait_for(lambda: bool(prom.query("job_route:asrtk_slo_slow:ratio_rate5m")["result"]), 30,
                      "recording rules evaluated")

        # every rule evaluates without error
        groups = prom.client.get(prom.url + "/api/v1/rules").json()["data"]["groups"]
        all_rules = [r for g in groups for r in g["rules"]]
        assert len(all_rules) == len(rules.recorded_names(spec)) + len(list(rules.iter_alert_names(spec)))
        assert [r["name"] for r in all_rules if r["health"] != "ok"] == []

        empty: list[str] = []
        checked = 0
        for name, d in ((d.filename, dashboards.to_json(d)) for d in dashboards.all_dashboards(spec)):
            values: dict[str, str] = {}
            for v in d["templating"]["list"][1:]:
                m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", v["definition"])
                assert m, v["definition"]
                got = prom.label_values(m.group(2), _substitute(m.group(1), values))
                if not got:
                    empty.append(f"{name} variable {v['name']}")
                values[v["name"]] = ".*" if v.get("includeAll") else (got[0] if got else "")
            for p in d["panels"]:
                for t in p["targets"]:
                    checked += 1
                    data = prom.query(_substitute(t["expr"], values))
                    if not data["result"]:
                        empty.append(f"{name} / {p['title']} / {t['legendFormat']}")
        assert empty == [], empty
        assert not load.stop.is_set()

    codes = {c: load.codes.count(c) for c in set(load.codes)}
    assert codes.get(200, 0) > 0 and any(400 <= c < 500 for c in codes), codes
    with capsys.disabled():
        print(f"\n[prometheus] {checked} panel queries and every variable returned data; "
              f"{len(all_rules)} rules healthy; load: {codes}")


def test_every_metric_used_by_rules_and_dashboards_exists_in_live_metrics(
    cached_server_url: str, gpu_exporter_port: int, audio_clip: Callable[..., bytes]
) -> None:
    reference_server_url = cached_server_url
    with httpx.Client(timeout=10.0, trust_env=False) as c:  # make every labelled series appear
        assert c.post(reference_server_url + "/recognize",
                      files={"file": ("a.wav", audio_clip(0.5), "audio/wav")}).status_code == 200
        assert c.post(reference_server_url + "/recognize",
                      files={"file": ("b.wav", b"not audio", "audio/wav")}).status_code in range(400, 500)
    spec = S.default_spec()
    used = rules.rule_metric_names(spec)
    for d in dashboards.all_dashboards(spec):
        for p in d.panels:
            for t in p.targets:
                used |= rules.metric_names(t.expr)
    server_side = {n for n in used if n not in DCGM_NAMES and n != "up"}
    missing = server_side - _live_names(reference_server_url)
    assert not missing, f"used by rules/dashboards but not exposed by the server: {sorted(missing)}"
    gpu_side = used & set(DCGM_NAMES)
    assert gpu_side and not gpu_side - _live_names(f"http://127.0.0.1:{gpu_exporter_port}")


def test_checked_in_prometheus_defaults_parse_as_yaml() -> None:
    from toolkit.resources import data_dir

    doc = yaml.safe_load((data_dir("alerts") / rules.RULES_FILE).read_text())
    assert {g["name"] for g in doc["groups"]} == {"asrtk.recording", "asrtk.slo", "asrtk.alerts"}


def test_plan_and_generate_with_an_inventory_scrape_the_servers_it_lists(
    reference_server_url: str, start_server: Callable[..., object], tmp_path: Path,
) -> None:
    """`asrtk plan --hosts` -> `asrtk generate all`: promtool accepts the config as written, and a real
    Prometheus on it scrapes every reference server of the inventory (active and backup)."""
    from typer.testing import CliRunner

    from toolkit.cli.main import app

    second = start_server(extra_args=["--threads", "1"])
    addresses = [reference_server_url.removeprefix("http://"), second.url.removeprefix("http://")]  # type: ignore[attr-defined]
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("".join(f"{a}\n" for a in addresses))
    (tmp_path / "m.csv").write_text("workers,users,qps,p95_s,error_rate\n1,4,20,0.2,0\n1,8,24,1.9,2%\n")
    runner = CliRunner()
    r = runner.invoke(app, ["plan", "--target-qps", "10", "--slo", "p95=1s", "--measurements", str(tmp_path / "m.csv"),
                            "--hosts", str(hosts), "--out", str(tmp_path / "plan")])
    assert r.exit_code == 0, r.output
    out = tmp_path / "ops"
    r = runner.invoke(app, ["generate", "all", "--plan", str(tmp_path / "plan/plan.yaml"), "--scrape-interval-s", "1",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "SUCCESS" in _promtool("check", "config", "prometheus/prometheus.yml", cwd=out)
    with Prometheus(tmp_path, out / "prometheus/prometheus.yml") as prom:
        prom.wait_for(lambda: len(prom.query('up{job="asrtk"} == 1')["result"]) == 2, 30, "both servers up")
        up = {s["metric"]["instance"]: s["metric"]["role"] for s in prom.query('up{job="asrtk"}')["result"]}
    assert up == {addresses[0]: "active", addresses[1]: "backup"}
