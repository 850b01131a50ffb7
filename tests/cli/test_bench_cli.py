"""``asrtk bench`` / ``asrtk worker``: flags, exit codes and one-line messages on every error path."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit.cli.bench import parse_headers
from toolkit.cli.main import app
from toolkit.errors import UsageError

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


def _last_err(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_help_lists_the_flags_and_examples() -> None:
    r = _run("bench", "--help")
    assert r.exit_code == 0
    for flag in ("--scenario", "--target", "--rate", "--users", "--duration", "--warmup", "--seed", "--out",
                 "--audio-dir", "--processes", "--scrape", "--header", "--quiet", "--fail-on-slo", "--model",
                 "--server-workers", "--target-pids"):
        assert flag in r.stdout, flag
    assert "asrtk bench --scenario callcenter" in r.stdout


def test_bad_header_is_a_usage_error_without_echoing_the_value() -> None:
    r = _run("bench", "--header", "Bearer-s3cret", "--target", "http://127.0.0.1:9")
    assert r.exit_code == 2
    assert _last_err(r) == "error: --header #1 must look like 'Name: value'"
    assert "s3cret" not in r.stderr


def test_parse_headers() -> None:
    assert parse_headers(["Authorization: Bearer a:b", "X-K:v"]) == {"Authorization": "Bearer a:b", "X-K": "v"}
    with pytest.raises(UsageError):
        parse_headers([": nothing"])


def test_rate_and_users_together_are_refused() -> None:
    r = _run("bench", "--rate", "2", "--users", "3", "--target", "http://127.0.0.1:9")
    assert r.exit_code == 2
    assert "mutually exclusive" in _last_err(r)


@pytest.mark.parametrize("args, needle", [
    (["--rate", "-1"], "--rate"),
    (["--users", "0"], "--users"),
    (["--duration", "0"], "--duration"),
    (["--processes", "0"], "--processes must be >= 1"),
    (["--server-workers", "0"], "--server-workers must be >= 1"),
])
def test_bad_numbers_exit_2_naming_the_flag(args: list[str], needle: str) -> None:
    r = _run("bench", *args, "--target", "http://127.0.0.1:9")
    assert r.exit_code == 2, r.output
    assert _last_err(r).startswith("error: ") and needle in _last_err(r)


def test_unknown_scenario_lists_the_builtins() -> None:
    r = _run("bench", "--scenario", "nope", "--target", "http://127.0.0.1:9")
    assert r.exit_code == 2
    assert "callcenter" in _last_err(r)


def test_invalid_scenario_file_names_file_and_key(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nprotocol: {kind: recognize}\nload: {mode: open, rate: -5}\nduration_s: 5\n"
                 "slo: {latency_s: 1}\n")
    r = _run("bench", "--scenario", str(p), "--target", "http://127.0.0.1:9")
    assert r.exit_code == 2
    assert "bad.yaml" in _last_err(r) and "rate" in _last_err(r)


@pytest.mark.parametrize(("repeat", "needle"), [
    ("{catalog: 0}", "repeat.catalog must be an integer between 1 and 1000000"),
    ("{catalog: 50, distribution: zipfian}", "repeat.distribution must be one of zipf, uniform"),
    ("{catalog: 50, s: 1.1, alpha: 2}", "repeat.alpha is not a known key"),
])
def test_a_bad_repeat_block_exits_2_in_one_line_naming_the_field(tmp_path: Path, repeat: str, needle: str) -> None:
    p = tmp_path / "rep.yaml"
    p.write_text(f"name: rep\nprotocol: {{kind: recognize}}\nrepeat: {repeat}\nload: {{rate: 1}}\nduration_s: 5\n"
                 "slo: {latency_s: 1}\n")
    r = _run("bench", "--scenario", str(p), "--target", "http://127.0.0.1:9")
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0
    assert _last_err(r).startswith(f"error: scenario 'rep' ({p}): {needle}")


def test_bad_target_url_is_a_usage_error(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "toolkit", "bench", "--target", "ftp://x", "--out",
                        str(tmp_path), "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: --target must be an http(s) URL")


def test_unreachable_target_exits_1_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "toolkit", "bench", "-s", "mobile", "--target",
                        f"http://127.0.0.1:{port}", "--out", str(tmp_path), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith(f"error: target http://127.0.0.1:{port} is unreachable")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args, line", [
    (["--target-pids", "12,x"], "error: --target-pids takes process ids like 1200 or 1200,1300 (repeatable), got 'x'"),
    (["--scrape", "http://a:1/metrics,gpu-1:9400/metrics"],
     "error: --scrape: 'http://a:1/metrics,gpu-1:9400/metrics' has a comma before its query; write every URL of "
     "a list with its scheme: http://a:8001/metrics,http://b:8002/metrics"),
    (["--scrape", "http://a:1/metrics", "--scrape", "ftp://b/metrics"],
     "error: --scrape takes http(s) URLs like http://127.0.0.1:8001/metrics (repeat it or separate them with "
     "commas), got 'ftp://b/metrics'"),
])
def test_bad_list_flags_exit_2_in_one_line(args: list[str], line: str) -> None:
    r = _run("bench", *args, "--target", "http://127.0.0.1:9")
    assert r.exit_code == 2, r.output
    assert r.stderr.strip() == line


def test_target_pids_that_name_no_process_or_bench_itself_exit_2_before_any_load(tmp_path: Path) -> None:
    import os

    import psutil

    gone = max(psutil.pids()) + 100_000
    for pid, needle in ((gone, f"error: --target-pids: no process {gone} on this host"),
                        (os.getpid(), f"error: --target-pids: {os.getpid()} is asrtk bench itself or one of its parents")):
        r = subprocess.run([sys.executable, "-m", "toolkit", "bench", "--target", "http://127.0.0.1:9",
                            "--target-pids", str(pid), "--out", str(tmp_path), "--quiet"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith(needle)
    assert not any(tmp_path.iterdir())  # refused before the target was even probed


def test_worker_rejects_a_bad_port() -> None:
    r = _run("worker", "--master", "127.0.0.1", "--master-port", "0")
    assert r.exit_code == 2
    assert "--master-port" in _last_err(r)


def test_cli_import_does_not_pull_in_locust() -> None:
    code = "import sys, toolkit.cli.main; print('locust' in sys.modules, 'gevent' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == "False False"
