"""Generated nginx configs with the real nginx: `nginx -t` with zero warnings for several plans, and a
real nginx in front of reference servers: traffic split by weight, a killed replica ejected."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from reference_server.launcher import EmbeddedServer
from toolkit.generators import nginx
from toolkit.generators import spec as S

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(tmp: Path, spec: S.OpsSpec) -> Path:
    (tmp / "asrtk.conf").write_text(nginx.render(spec))
    run_as = "root" if os.geteuid() == 0 else None  # workers must reach the pytest tmp dirs
    conf = tmp / "nginx.conf"
    conf.write_text(nginx.standalone_wrapper(str(tmp / "asrtk.conf"), str(tmp), run_as=run_as))
    return conf


def nginx_test(tmp: Path, spec: S.OpsSpec) -> str:
    """Run `nginx -t`; return its output, failing on a non-zero exit or any warning."""
    conf = _write(tmp, spec)
    r = subprocess.run([NGINX, "-t", "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")],
                       capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for level in ("[warn]", "[emerg]", "[alert]", "[crit]"):
        assert level not in out, out
    return out


PLANS = {
    "one-node-type": {
        "target": {"qps": 300.0}, "slo": {"percentile": 0.95, "latency_s": 1.5},
        "node_types": [{"name": "gpu-a", "capacity_rps": 55.0}],
        "fleet": [{"name": f"gpu-a-{i}", "node_type": "gpu-a", "address": f"127.0.0.1:{8000 + i}", "weight": 55,
                   "backup": i == 8} for i in range(1, 9)],
        "latency_s": {"p50": 0.4, "p95": 1.1, "p99": 1.6, "max": 2.5},
        "request": {"max_body_bytes": 19200044, "streaming": False},
    },
    "heterogeneous-with-backups": {
        "target": {"qps": 120.0}, "slo": {"percentile": 0.99, "latency_s": 2.2},
        "node_types": [{"name": "gpu-a", "capacity_rps": 55.0}, {"name": "gpu-b", "capacity_rps": 21.0}],
        "fleet": [
            {"name": "a1", "node_type": "gpu-a", "address": "127.0.0.1:8101", "weight": 55},
            {"name": "b1", "node_type": "gpu-b", "address": "127.0.0.1:8102", "weight": 21},
            {"name": "b2", "node_type": "gpu-b", "address": "[::1]:8103", "weight": 21},
            {"name": "a2", "node_type": "gpu-a", "address": "127.0.0.1:8104", "weight": 55, "backup": True},
            {"name": "b3", "node_type": "gpu-b", "address": "127.0.0.1:8105", "weight": 21, "backup": True},
        ],
        "latency_s": {"p50": 0.9, "p99": 2.0},
    },
    "streaming": {
        "target": {"qps": 8.0},
        "fleet": [{"address": "127.0.0.1:8201", "weight": 2}, {"address": "localhost:8202"}],
        "request": {"max_body_bytes": 2_000_000, "streaming": True},
        "latency_s": {"max": 30.0},
    },
    "minimal-hand-written": {"target": {"qps": 0.5}, "fleet": [{"address": "127.0.0.1:8301"}]},
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_generated_config_passes_nginx_t_without_warnings(name: str, tmp_path: Path) -> None:
    spec = S.from_plan(PLANS[name], name=f"{name}.yaml")
    out = nginx_test(tmp_path, spec)
    assert "test is successful" in out


def test_opt_in_retry_and_listen_variants_pass(tmp_path: Path) -> None:
    spec = S.from_plan(PLANS["streaming"]).with_overrides(
        retry_non_idempotent=True, listen="127.0.0.1:18080", server_name="asr.example.internal")
    nginx_test(tmp_path, spec)


def test_the_warning_check_catches_a_misordered_upstream(tmp_path: Path) -> None:
    """Control: `keepalive` before `least_conn` only warns (exit 0); the check must still fail it."""
    spec = S.from_plan(PLANS["one-node-type"])
    bad = nginx.render(spec).replace("    least_conn;\n", "").replace("    keepalive_timeout", "    least_conn;\n    keepalive_timeout")
    conf = _write(tmp_path, spec)
    (tmp_path / "asrtk.conf").write_text(bad)
    r = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "[warn]" in r.stderr


# -- a live nginx in front of reference servers ------------------------------------------------


class Nginx:
    def __init__(self, tmp: Path, spec: S.OpsSpec) -> None:
        self.port = int(spec.listen.rsplit(":", 1)[-1])
        self.url = f"http://127.0.0.1:{self.port}"
        nginx_test(tmp, spec)  # writes the config, fails on any warning
        self.conf = tmp / "nginx.conf"
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "Nginx":
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.tmp), "-c", str(self.conf), "-e", str(self.tmp / "error.log"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0, trust_env=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, (self.tmp / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not answer /healthz within 15 s"
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGQUIT)  # graceful shutdown
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def _served(url: str, route: str = "/recognize") -> float:
    """Requests the server itself counted on ``route`` (all statuses), from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=5.0, trust_env=False).text
    total = 0.0
    for fam in text_string_to_metric_families(text):
        if fam.name == "asrtk_requests":
            total += sum(s.value for s in fam.samples
                         if s.name == "asrtk_requests_total" and s.labels.get("route") == route)
    return total


@pytest.fixture
def servers(start_server: Callable[..., EmbeddedServer]) -> Iterator[list[EmbeddedServer]]:
    yield [start_server(extra_args=["--threads", "1"]) for _ in range(3)]


def _post_many(url: str, clip: bytes, n: int, concurrency: int,
               on_progress: Callable[[int], None] | None = None) -> list[int]:
    codes: list[int] = []
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        def one(i: int) -> int:
            if on_progress is not None:
                on_progress(i)
            try:
                return client.post(url + "/recognize", files={"file": ("a.wav", clip, "audio/wav")}).status_code
            except httpx.HTTPError:
                return 0
        with ThreadPoolExecutor(concurrency) as pool:
            codes = list(pool.map(one, range(n)))
    return codes


def test_live_weights_split_traffic_and_a_killed_replica_is_ejected(
    servers: list[EmbeddedServer], tmp_path: Path, audio_clip: Callable[..., bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    weights = (3, 2, 1)
    # limit_req is sized from the target QPS: set it far above what 3 clients send (this test is about weights)
    spec = S.from_flags([f"{s.url.removeprefix('http://')}:{w}" for s, w in zip(servers, weights)],
                        target_qps=5000).with_overrides(listen=f"127.0.0.1:{_free_port()}")
    clip = audio_clip(0.3)
    with Nginx(tmp_path, spec) as lb:
        # 1. share by weight. least_conn picks the server with the fewest in-flight requests per unit
        # of weight and breaks ties by weighted round robin: one request at a time, every pick is a tie.
        # (With as many concurrent clients as servers, least_conn follows each server's drain rate
        # instead, which is what capacity-proportional weights predict anyway: figure printed below.)
        def shares_at(concurrency: int, n: int) -> list[float]:
            before = [_served(s.url) for s in servers]
            codes = _post_many(lb.url, clip, n, concurrency=concurrency)
            assert codes.count(200) == n, {c: codes.count(c) for c in set(codes)}
            served = [_served(s.url) - b for s, b in zip(servers, before)]
            assert sum(served) == n
            return [x / n for x in served]

        planned = [w / sum(weights) for w in weights]
        shares = shares_at(1, 240)
        for got, want in zip(shares, planned):
            assert abs(got - want) <= 0.10 * want, (shares, planned)
        busy_shares = shares_at(3, 150)

        # 2. kill one replica (SIGKILL, no drain) under load: bounded client errors, then ejected
        victim = servers[0]
        concurrency, n = 4, 240

        def kill_at(i: int) -> None:
            if i == 60:
                os.killpg(victim.pid, signal.SIGKILL)

        t0 = time.monotonic()
        codes = _post_many(lb.url, clip, n, concurrency=concurrency, on_progress=kill_at)
        errors = n - codes.count(200)
        # only requests already sent to the victim may fail (and the generated config re-sends those too)
        assert errors <= concurrency, {c: codes.count(c) for c in set(codes)}
        after = _post_many(lb.url, clip, 60, concurrency=2)
        assert after.count(200) == 60
        elapsed = time.monotonic() - t0
        log = (tmp_path / "error.log").read_text()
        # Ejected: nginx tries the dead server max_fails times per fail_timeout window, not on every
        # pick (without ejection about half of the ~240 later picks would go to it: weight 3 of 6).
        windows = 1 + math.ceil(elapsed / spec.fail_timeout_s)
        connect_failures = log.count("connect() failed")
        assert 1 <= connect_failures <= spec.max_fails * windows + concurrency, (connect_failures, elapsed)
        with capsys.disabled():
            print(f"\n[nginx] planned shares {[round(p, 3) for p in planned]} measured {[round(s, 3) for s in shares]} (1 client),"
                  f" {[round(s, 3) for s in busy_shares]} (3 clients);"
                  f" kill under load: {errors} client errors of {n} at concurrency {concurrency}"
                  f" ({ {c: codes.count(c) for c in set(codes)} }); upstream errors logged: "
                  f"{connect_failures} connect in {elapsed:.1f} s, {log.count('upstream prematurely closed')} premature close")


# -- plan -> generate, applied as written -------------------------------------------------------

# the closed-loop table of issue 11: the largest worker count has a row past the knee
PUBLISHED = "workers,users,qps,p95_s,error_rate\n1,8,11,0.62,0\n2,16,21,0.71,0\n4,32,39,0.95,0\n4,64,33,2.8,3%\n"


def _cli(*args: str) -> str:
    from typer.testing import CliRunner

    from toolkit.cli.main import app

    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.stderr


def _nginx_t_as_written(nginx_dir: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the generated directory exactly as docs/operations.md says, no file rewritten."""
    return subprocess.run([NGINX, "-t", "-p", str(nginx_dir), "-c", "nginx-standalone.conf", "-e", "error.log"],
                          capture_output=True, text=True, timeout=30)


def test_plan_and_generate_with_an_inventory_pass_nginx_t_as_written(tmp_path: Path) -> None:
    (tmp_path / "article.csv").write_text(PUBLISHED)
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# loopback stand-ins for the GPU nodes\n"
                     + "".join(f"127.0.0.1:{18100 + i}\n" for i in range(1, 6)))
    _cli("plan", "--target-qps", "100", "--slo", "p95=1.5s", "--measurements", str(tmp_path / "article.csv"),
         "--out", str(tmp_path / "plan"))
    out = tmp_path / "ops"
    _cli("generate", "all", "--plan", str(tmp_path / "plan/plan.yaml"), "--hosts", str(hosts), "--out", str(out))
    r = _nginx_t_as_written(out / "nginx")
    assert r.returncode == 0 and "test is successful" in r.stderr, r.stderr
    for level in ("[warn]", "[emerg]", "[alert]", "[crit]"):
        assert level not in r.stdout + r.stderr, r.stderr
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".conf", ".yml", ".json"):
            text = path.read_text()
            assert "replace-me" not in text and "TEMPLATE" not in text, path
    conf = (out / "nginx/asrtk.conf").read_text()
    assert [f"127.0.0.1:{18100 + i}" in conf for i in range(1, 6)] == [True] * 5


def test_a_template_is_marked_and_nginx_t_refuses_it(tmp_path: Path) -> None:
    """Control: the placeholders can never pass for a deployable file."""
    (tmp_path / "article.csv").write_text(PUBLISHED)
    _cli("plan", "--target-qps", "100", "--slo", "p95=1.5s", "--measurements", str(tmp_path / "article.csv"),
         "--out", str(tmp_path / "plan"))
    _cli("generate", "nginx", "--plan", str(tmp_path / "plan/plan.yaml"), "--template", "--out", str(tmp_path / "t"))
    r = _nginx_t_as_written(tmp_path / "t/nginx")
    assert r.returncode != 0 and "host not found in upstream" in r.stderr and "replace-me.invalid" in r.stderr
