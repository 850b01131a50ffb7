import json

from typer.testing import CliRunner

from toolkit import __version__
from toolkit.cli.main import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"asrtk {__version__}"


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("serve", "doctor", "bench"):
        assert cmd in result.stdout


def test_unknown_command_is_usage_error() -> None:
    result = runner.invoke(app, ["no-such-command"])
    assert result.exit_code == 2


def test_doctor_json_reports_providers_gpus_and_tools() -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["providers"]["CPUExecutionProvider"] == ""
    assert report["packages"]["locust"]
    # either GPUs are listed or there is an exact reason why none are
    assert report["gpus"] or report["gpu_reason"]
    for tool in ("nginx", "promtool", "prometheus"):
        info = report["tools"][tool]
        assert info["version"] or info["reason"]


def test_doctor_human_output_exits_zero() -> None:
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "CPUExecutionProvider" in result.stdout
    assert "NVIDIA GPUs" in result.stdout
