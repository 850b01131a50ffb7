"""``asrtk serve`` flag validation: every bad flag is a one-line error and exit code 2, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers must be >= 1, got 0"),
        (["--max-batch", "0"], "--max-batch must be >= 1, got 0"),
        (["--max-queue", "0"], "--max-queue must be >= 1, got 0"),
        (["--max-wait-ms", "-1"], "--max-wait-ms must be >= 0"),
        (["--max-audio-s", "0"], "--max-audio-s must be > 0"),
        (["--max-body-mb", "0"], "--max-body-mb must be > 0"),
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--device", "tpu"], "--device must be auto, cpu or cuda, got 'tpu'"),
        (["--model", "huge"], "--model 'huge' is not a preset (tiny, small"),
        (["--model", "/nonexistent/model.onnx"], "--model /nonexistent/model.onnx does not exist"),
        (["--data-dir", "/nonexistent-dir"], "--data-dir /nonexistent-dir is not a directory"),
        (["--log-level", "loud"], "--log-level must be one of"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--request-timeout-s", "0"], "--request-timeout-s must be > 0"),
        (["--api-key", ""], "--api-key must not be empty"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_port_in_use_is_a_usage_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        result = runner.invoke(app, ["serve", "--port", str(port), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_help_documents_the_flags() -> None:
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--max-batch", "--max-wait-ms", "--max-queue", "--max-audio-s", "--max-body-mb", "--data-dir",
                 "--api-key", "--drain-timeout-s", "--request-timeout-s", "--workers", "--device"):
        assert flag in result.stdout
