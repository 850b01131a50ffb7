"""`asrtk drill` through the real Typer app: every usage error is one line and exit 2, before
anything starts; verdicts map to exit codes 0 / 3 / 130 and the --json document."""

from __future__ import annotations

import json
from pathlib import Path
import pytest
from typer.testing import CliRunner

from toolkit.cli.main import app
from toolkit.drills.model import DrillResult, Promise
from toolkit.runs.drill import DrillConfig, DrillOutcome, check_config

runner = CliRunner()


@pytest.mark.parametrize("args, message", [
    (["--drills", "kill,explode"], "unknown drill 'explode'"),
    (["--drills", ","], "--drills is empty"),
    (["--inject", "kill=true"], "--inject runs your own commands against --target URL"),
    (["--target", "http://127.0.0.1:9", "--drills", "kill"], "drill kill against --target needs --inject kill="),
    (["--target", "http://127.0.0.1:9", "--drills", "hang", "--inject", "hang=true"], "needs --inject resume="),
    (["--target", "http://127.0.0.1:9", "--drills", "overload"], "needs --capacity-rps"),
    (["--target", "http://127.0.0.1:9", "--inject", "kill"], "must look like NAME='COMMAND'"),
    (["--target", "http://127.0.0.1:9", "--drills", "kill", "--inject", "explode=true", "--inject", "kill=true"],
     "--inject explode=...: unknown hook"),
    (["--backups", "0", "--drills", "failover"], "the failover drill needs a backup"),
    (["--replicas", "2", "--drills", "kill"], "kill and hang need at least 2 primaries"),
    (["--replicas", "1"], "--replicas must be >= 2"),
    (["--settle", "0"], "--settle must be > 0"),
    (["--overload-factor", "0"], "--overload-factor must be > 0"),
    (["--max-fails", "-1"], "--max-fails must be >= 0"),
    (["--fail-timeout", "soon"], "must be a duration like 20s"),
    (["--scenario", "meeting"], "streams over WebSocket"),
])
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    r = runner.invoke(app, ["drill", "--out", str(tmp_path), *args])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


def _outcome(tmp_path: Path, held: bool | None, interrupted: bool = False) -> DrillOutcome:
    from datetime import datetime, timezone

    from toolkit.drills import outputs
    from toolkit.drills.judge import Facts
    from toolkit.drills.model import Slo, exit_code

    res = [DrillResult("kill", [Promise("kill.errors", "client errors <= in flight", held, "2", "<= 0", "why")],
                       2 if held is False else 0, 0, 0.5, 11.0, "SIGKILL replica-1 ...", wall_s=20.0)]
    summary = outputs.build_summary(
        asrtk_version="0", created=datetime(2026, 1, 1, tzinfo=timezone.utc), complete=not interrupted,
        incomplete_reason="interrupted" if interrupted else None, scenario="mobile",
        target={"url": "http://127.0.0.1:1", "embedded": True}, capacity_rps=100.0, capacity_source="x",
        calibration=None, base_rps=10.0, facts=Facts(slo=Slo(0.95, 1.0)), results=res, runs=[], wall_s=20.0,
        exit_code=exit_code(res))
    return DrillOutcome(run_dir=tmp_path, results=res, summary=summary, interrupted=interrupted)


@pytest.mark.parametrize("held, interrupted, code", [(True, False, 0), (None, False, 0), (False, False, 3),
                                                     (True, True, 130)])
def test_verdicts_become_exit_codes_and_the_json_document(held: bool | None, interrupted: bool, code: int,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import toolkit.runs.drill

    seen: list[DrillConfig] = []

    def fake(cfg: DrillConfig) -> DrillOutcome:
        seen.append(cfg)
        return _outcome(tmp_path, held, interrupted)

    monkeypatch.setattr(toolkit.runs.drill, "run_drill", fake)
    out = tmp_path / "drill.json"
    r = runner.invoke(app, ["drill", "--drills", "kill", "--json", str(out), "--fail-timeout", "3s",
                            "--server-args", "--not-ready respond --drain-grace-s 1", "--no-retry-non-idempotent"])
    assert r.exit_code == code, r.output
    cfg = seen[0]
    assert cfg.drills == ["kill"] and cfg.fail_timeout_s == 3 and cfg.retry_non_idempotent is False
    assert cfg.server_args == ["--not-ready", "respond", "--drain-grace-s", "1"]
    doc = json.loads(out.read_text())
    assert doc["drills"][0]["name"] == "kill" and doc["drills"][0]["passed"] is held
    if held is False:
        assert "broken: kill: client errors <= in flight: BROKEN: measured 2, bound <= 0 (why)" in r.stderr
    if interrupted:
        assert "interrupted" in r.stderr


def test_check_config_accepts_a_target_with_its_hooks() -> None:
    from toolkit.scenario import load_scenario

    check_config(DrillConfig(scenario=load_scenario("mobile"), drills=["kill", "hang", "overload"],
                             target="http://127.0.0.1:9", capacity_rps=50.0,
                             hooks={"kill": "true", "hang": "true", "resume": "true"}))


def test_help_names_the_drills_and_the_exit_codes() -> None:
    r = runner.invoke(app, ["drill", "--help"])
    assert r.exit_code == 0
    for word in ("kill", "restart", "hang", "overload", "failover", "--inject", "3 a promise broke", "4 inconclusive"):
        assert word in r.stdout
