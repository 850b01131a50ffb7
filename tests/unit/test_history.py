"""The run history (``toolkit.history``) on SQLite, its wiring into bench, and ``asrtk results
list`` / ``trend`` through the CLI. PostgreSQL: tests/integration/test_history_postgres.py."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from toolkit.cli.main import app
from toolkit.errors import ConfigError, UsageError
from toolkit.history import (
    RunRecord,
    fingerprint_of,
    git_info,
    host_fingerprint,
    normalize_created,
    open_history,
    record_from_summary,
    record_run,
)
from toolkit.results import FILES, SCHEMA, write_json_atomic

runner = CliRunner()
GIT = {"commit": "c0ffee" * 6 + "abcd", "branch": "main", "source": "git"}
HOST = {"fingerprint": "0123456789ab", "hostname": "ci-1", "cpu_model": "Test CPU", "cores": 2,
        "memory_bytes": 8 * 2**30, "os": "Linux 6.1"}
OLD_LIST_KEYS = {"run_id", "scenario", "created", "complete", "valid", "rps", "p95", "error_rate", "slo_passed",
                 "path"}


@pytest.fixture(autouse=True)
def _no_history_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASRTK_HISTORY_URL", raising=False)


def summary(run_id: str, created: str, *, scenario: str = "probe", p95: float = 0.25, disturbed: bool = False,
            valid: bool = True, complete: bool = True, rps: float = 10.0) -> dict[str, Any]:
    """The parts of an ``asrtk.result/v1`` summary the history and `results list` read."""
    return {
        "schema": SCHEMA, "run_id": run_id, "created": created, "complete": complete, "label": None,
        "incomplete_reason": None if complete else "interrupted",
        "scenario": {"name": scenario, "source": "builtin", "protocol": "http", "seed": 1},
        "target": {"url": "http://user:pw@gpu-1:8000", "embedded": False, "server": None},
        "load": {"achieved_rps": rps}, "throughput": {"rps": rps},
        "requests": {"total": 100, "ok": 99, "errors": 1, "error_rate": 0.01},
        "latency_s": {"p50": p95 / 2, "p95": p95, "p99": p95 * 1.5},
        "rtf": {"p50": 0.1, "p95": 0.2, "p99": 0.3, "mean": 0.1},
        "slo": {"passed": True, "checks": []}, "loadgen": {"valid": valid},
        "host": {"disturbed": disturbed, "target_cpu_s_per_request": 0.02},
        "server": {"cpu_s_per_request": 0.03}, "files": dict(FILES),
    }


def rec(run_id: str, created: str, *, branch: str = "main", kind: str = "bench", run_dir: Path | None = None,
        verdict: str | None = None, **kw: Any) -> RunRecord:
    return record_from_summary(summary(run_id, created, **kw), run_dir or Path("/runs") / run_id, kind, verdict,
                               git={**GIT, "branch": branch}, host=HOST)


def write_run(out: Path, s: dict[str, Any]) -> Path:
    d = out / s["run_id"]
    d.mkdir(parents=True)
    write_json_atomic(d / FILES["summary"], s)
    return d


# ----------------------------------------------------------------------------- records


def test_a_record_carries_the_key_figures_of_the_summary(tmp_path: Path) -> None:
    r = rec("20261202-120000-probe", "2026-12-02T12:00:00Z", run_dir=tmp_path / "x", disturbed=True)
    assert (r.kind, r.scenario, r.git_commit, r.git_branch, r.host_fingerprint) == (
        "bench", "probe", GIT["commit"], "main", "0123456789ab")
    assert r.target == "http://gpu-1:8000"  # no credentials in the history
    assert (r.rps, r.p50_s, r.p95_s, r.p99_s, r.error_rate, r.rtf_p95) == (10.0, 0.125, 0.25, 0.375, 0.01, 0.2)
    assert (r.cpu_s_per_request, r.cpu_source) == (0.02, "local")  # the target's host CPU before its counter
    assert r.disturbed is True and r.valid is True and r.complete is True and r.slo_passed is True
    assert r.created == "2026-12-02T12:00:00.000000Z" and r.path == str((tmp_path / "x").resolve())
    assert (r.host_name, r.host_cores, r.host_memory_bytes) == ("ci-1", 2, 8 * 2**30)


def test_a_sweep_is_recorded_from_its_capacity_document(tmp_path: Path) -> None:
    step = {"loadgen_valid": True, "host": {"disturbed": False}, "cpu_s_per_request": 0.05, "cpu_source": "metrics"}
    doc = {"schema": "asrtk.capacity/v1", "sweep_id": "20261202-120000-probe", "created": "2026-12-02T12:00:00Z",
           "scenario": {"name": "probe"}, "target": {"url": "http://127.0.0.1:9"},
           "steps": [step, {**step, "host": {"disturbed": True}}],
           "result": {"max_rps_at_slo": 42.0, "best_step": 0,
                      "at_best": {"p50_s": 0.1, "p95_s": 0.2, "p99_s": 0.3, "error_rate": 0.0}}}
    r = record_from_summary(doc, tmp_path / "sweep-20261202-120000-probe", "sweep", git=GIT, host=HOST)
    assert (r.run_id, r.kind, r.rps, r.p95_s, r.cpu_s_per_request, r.cpu_source) == (
        "sweep-20261202-120000-probe", "sweep", 42.0, 0.2, 0.05, "metrics")
    assert r.disturbed is True and r.valid is True  # one disturbed step marks the sweep


def test_a_record_rejects_an_unknown_kind_or_verdict() -> None:
    with pytest.raises(ConfigError, match="kind must be one of bench, sweep, gate"):
        rec("r", "2026-12-02T12:00:00Z", kind="soak")
    with pytest.raises(ConfigError, match="gate verdict must be one of pass, fail, inconclusive"):
        rec("r", "2026-12-02T12:00:00Z", kind="gate", verdict="maybe")


def test_created_times_sort_as_text_whatever_their_precision() -> None:
    assert normalize_created("2026-12-02T12:00:00Z") < normalize_created("2026-12-02T12:00:00.5Z")
    assert normalize_created("2026-12-02T13:00:00+01:00") == "2026-12-02T12:00:00.000000Z"
    assert normalize_created(datetime(2026, 12, 2, 12, tzinfo=timezone.utc)) == "2026-12-02T12:00:00.000000Z"


# ----------------------------------------------------------------------------- the SQLite history


def test_sqlite_is_the_default_with_wal_and_a_schema_version(tmp_path: Path) -> None:
    with open_history(None, tmp_path / "results") as h:
        assert h.runs() == []
        assert h.where == str(tmp_path / "results" / "history.sqlite")
    db = sqlite3.connect(tmp_path / "results" / "history.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version FROM asrtk_schema_version").fetchall() == [(1,)]
    indexes = [r[1] for r in db.execute("PRAGMA index_list(runs)")]
    assert "runs_scenario_branch_created" in indexes
    db.execute("UPDATE asrtk_schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="schema version 99.*upgrade asrtk"):
        open_history(None, tmp_path / "results")


def test_the_env_url_and_sqlite_urls_choose_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASRTK_HISTORY_URL", f"sqlite:///{tmp_path}/elsewhere.sqlite")
    open_history(None, tmp_path / "results").close()
    assert (tmp_path / "elsewhere.sqlite").is_file() and not (tmp_path / "results").exists()
    open_history(f"sqlite:///{tmp_path}/explicit.sqlite", tmp_path / "results").close()  # a URL beats the env
    assert (tmp_path / "explicit.sqlite").is_file()


def test_record_list_and_filters_newest_first(tmp_path: Path) -> None:
    with open_history(None, tmp_path) as h:
        h.record(rec("a", "2026-12-01T10:00:00Z"))
        h.record(rec("b", "2026-12-01T11:00:00.250Z", branch="feature"))
        h.record(rec("c", "2026-12-01T12:00:00Z", scenario="other"))
        h.record(rec("b", "2026-12-01T11:00:00.250Z", kind="gate", verdict="fail", branch="feature"))
        assert [r.run_id for r in h.runs()] == ["c", "b", "b", "a"]
        assert [r.run_id for r in h.runs(scenario="probe")] == ["b", "b", "a"]
        assert [r.run_id for r in h.runs(branch="main")] == ["c", "a"]
        assert [(r.run_id, r.gate_verdict) for r in h.runs(kind="gate")] == [("b", "fail")]
        assert [r.run_id for r in h.runs(scenario="probe", branch="feature", kind="bench")] == ["b"]
        assert [r.run_id for r in h.runs(limit=2)] == ["c", "b"]
        # every field survives the round trip, booleans as booleans
        assert h.runs(scenario="other")[0] == rec("c", "2026-12-01T12:00:00Z", scenario="other")


def test_recording_a_run_again_replaces_it(tmp_path: Path) -> None:
    with open_history(None, tmp_path) as h:
        h.record(rec("a", "2026-12-01T10:00:00Z", p95=0.5))
        h.record(rec("a", "2026-12-01T10:00:00Z", p95=0.5))
        h.record(rec("a", "2026-12-01T10:00:00Z", p95=0.7))
        assert [(r.run_id, r.p95_s) for r in h.runs()] == [("a", 0.7)]
        h.record(rec("a", "2026-12-01T10:00:00Z", run_dir=Path("/other/a")))  # another directory: another run
        assert len(h.runs()) == 2


def test_latest_is_the_newest_complete_valid_quiet_run_of_the_branch(tmp_path: Path) -> None:
    with open_history(None, tmp_path) as h:
        assert h.latest("probe", "main") is None
        h.record(rec("good-old", "2026-12-01T09:00:00Z"))
        h.record(rec("good", "2026-12-01T10:00:00Z"))
        h.record(rec("disturbed", "2026-12-01T11:00:00Z", disturbed=True))
        h.record(rec("invalid", "2026-12-01T12:00:00Z", valid=False))
        h.record(rec("incomplete", "2026-12-01T13:00:00Z", complete=False))
        h.record(rec("other-branch", "2026-12-01T14:00:00Z", branch="feature"))
        h.record(rec("other-scenario", "2026-12-01T15:00:00Z", scenario="other"))
        h.record(rec("a-gate", "2026-12-01T16:00:00Z", kind="gate", verdict="pass"))
        assert h.latest("probe", "main").run_id == "good"
        assert h.latest("probe", "main", valid_only=False).run_id == "incomplete"
        assert h.latest("probe", "main", kind="gate").run_id == "a-gate"
        assert h.latest("probe", "feature").run_id == "other-branch"
        assert h.latest("probe", "main", host_fingerprint="not-this-host") is None
        assert h.latest("probe", "nope") is None


def test_two_histories_on_one_file_write_at_once(tmp_path: Path) -> None:
    barrier = threading.Barrier(2)
    seen: dict[str, int] = {}
    errors: list[BaseException] = []

    def machine(name: str) -> None:
        try:
            barrier.wait(timeout=10)  # both create the file and its schema at the same moment
            with open_history(None, tmp_path) as h:
                barrier.wait(timeout=10)
                for i in range(20):
                    h.record(rec(f"{name}-{i:02d}", f"2026-12-01T10:00:{i:02d}Z"))
                barrier.wait(timeout=10)
                seen[name] = len(h.runs())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=machine, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == [] and seen == {"a": 40, "b": 40}


@pytest.mark.parametrize("url", ["mysql://admin:hunter2@db/asrtk", "http://x", "sqlite://", "history.sqlite"])
def test_an_unknown_url_is_a_usage_error_naming_the_forms(tmp_path: Path, url: str) -> None:
    with pytest.raises(UsageError) as e:
        open_history(url, tmp_path)
    msg = str(e.value)
    assert "postgresql://USER:PASSWORD@HOST[:PORT]/DB" in msg and "sqlite:///PATH" in msg
    assert "hunter2" not in msg and "\n" not in msg


def test_a_missing_default_history_is_not_created_when_only_reading(tmp_path: Path) -> None:
    from toolkit.errors import NoDataError

    with pytest.raises(NoDataError, match="no run history at"):
        open_history(None, tmp_path, create=False)
    assert not (tmp_path / "history.sqlite").exists()


def test_a_failed_record_is_one_warning_and_the_caller_goes_on(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "file").write_text("not a directory")
    s = summary("r", "2026-12-02T12:00:00Z")
    assert record_run(f"sqlite:///{tmp_path}/file/history.sqlite", tmp_path, s, tmp_path / "r", "bench") is None
    err = capsys.readouterr().err
    assert err.startswith("warning: run not recorded in the history (") and err.count("\n") == 1
    assert str(tmp_path / "r") in err


# ----------------------------------------------------------------------------- git and host


def test_git_info_from_ci_variables_outside_a_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # tmp_path is in no repo
    for k in ("GITHUB_SHA", "GITHUB_REF_NAME", "GITHUB_HEAD_REF", "CI_COMMIT_SHA", "CI_COMMIT_REF_NAME"):
        monkeypatch.delenv(k, raising=False)
    assert git_info(tmp_path) == {"commit": None, "branch": None, "source": None}
    monkeypatch.setenv("CI_COMMIT_SHA", "gitlab-sha")
    monkeypatch.setenv("CI_COMMIT_REF_NAME", "gl-branch")
    assert git_info(tmp_path) == {"commit": "gitlab-sha", "branch": "gl-branch", "source": "env"}
    monkeypatch.setenv("GITHUB_SHA", "gh-sha")
    monkeypatch.setenv("GITHUB_REF_NAME", "42/merge")
    monkeypatch.setenv("GITHUB_HEAD_REF", "")  # a push: no pull request
    assert git_info(tmp_path)["branch"] == "42/merge"
    monkeypatch.setenv("GITHUB_HEAD_REF", "feature-x")  # a pull request: its own branch
    assert git_info(tmp_path) == {"commit": "gh-sha", "branch": "feature-x", "source": "env"}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_info_from_git_and_a_detached_head_takes_the_ci_branch(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.setenv("GITHUB_REF_NAME", "from-ci")
    monkeypatch.delenv("GITHUB_HEAD_REF", raising=False)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              capture_output=True, text=True, check=True, timeout=10).stdout.strip()

    git("init", "-q", "-b", "perf-work")
    git("commit", "-q", "--allow-empty", "-m", "x")
    sha = git("rev-parse", "HEAD")
    assert git_info(tmp_path) == {"commit": sha, "branch": "perf-work", "source": "git"}
    git("checkout", "-q", "--detach")
    assert git_info(tmp_path) == {"commit": sha, "branch": "from-ci", "source": "git"}


def test_the_host_fingerprint_is_stable_and_changes_with_the_host() -> None:
    a, b = host_fingerprint(), host_fingerprint()
    assert a == b and len(a["fingerprint"]) == 12 and int(a["fingerprint"], 16) >= 0
    assert {"hostname", "cpu_model", "cores", "memory_bytes", "os"} <= set(a)
    parts = {k: a[k] for k in ("hostname", "cpu_model", "cores", "memory_bytes", "os")}
    assert fingerprint_of(parts) == a["fingerprint"]
    assert fingerprint_of({**parts, "cores": (parts["cores"] or 1) + 1}) != a["fingerprint"]
    assert fingerprint_of({**parts, "memory_bytes": 16 * 2**30}) != fingerprint_of({**parts, "memory_bytes": 8 * 2**30})
    # a few MiB more or less (kernel reservations) is the same machine
    assert fingerprint_of({**parts, "memory_bytes": 8 * 2**30 - 2**22}) == fingerprint_of(
        {**parts, "memory_bytes": 8 * 2**30})


# ----------------------------------------------------------------------------- bench records itself


def _bench(tmp_path: Path, **cfg: Any) -> Any:
    from toolkit.engine.clock import VirtualClock
    from toolkit.engine.transport import MockTransport
    from toolkit.runs.bench import BenchConfig, BenchSeams, run_bench
    from toolkit.samplers import GpuSampler, HostSampler, Telemetry
    from toolkit.scenario import load_scenario
    from toolkit.thresholds import Thresholds

    class Host:
        def cpu_percent_per_core(self) -> list[float]:
            return [30.0, 30.0]

        def memory_used_bytes(self) -> int:
            return 2**30

        def loadgen_cpu_percent(self) -> list[float]:
            return [20.0]

        def target_cpu_percent(self) -> float | None:
            return None

        def cpu_split_cores(self) -> tuple[float, float]:
            return (0.1, 0.0)

    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / "probe.yaml"
    p.write_text("name: probe\nprotocol: {kind: http, method: POST, path: /work, body: none}\n"
                 "load: {mode: open, rate: 5}\nduration_s: 3\nwarmup_s: 1\nseed: 3\nslo: {latency_s: 0.5}\n")
    clock = VirtualClock(start=100.0)

    def handler(req: Any) -> int:
        clock.sleep(0.05)
        return 200

    seams = BenchSeams(transport=lambda plan: MockTransport(handler), clock=clock, preflight=lambda b, h: 200,
                       has_metrics=lambda b, h: False,
                       telemetry=lambda b, s, u: Telemetry(HostSampler(Host()), GpuSampler(read=lambda: []), []),
                       now=lambda: datetime(2026, 12, 2, 12, tzinfo=timezone.utc))
    return run_bench(BenchConfig(scenario=load_scenario(str(p)), target="http://mock.invalid:8000",
                                 out_dir=tmp_path / "results", live=False, thresholds=Thresholds(), **cfg), seams)


def test_a_bench_run_is_recorded_once_and_a_sweep_step_is_not(tmp_path: Path) -> None:
    outcome = _bench(tmp_path)
    with open_history(None, tmp_path / "results") as h:
        (r,) = h.runs()
    assert (r.run_id, r.kind, r.path, r.scenario) == (outcome.run_dir.name, "bench", str(outcome.run_dir.resolve()),
                                                     "probe")
    assert r.rps == outcome.summary["load"]["achieved_rps"] and r.p95_s == outcome.summary["latency_s"]["p95"]
    assert r.disturbed is False and r.valid is True and r.complete is True
    assert r.host_fingerprint == host_fingerprint()["fingerprint"]

    step = _bench(tmp_path / "sweep", record_history=False)
    assert step.run_dir.is_dir() and not (tmp_path / "sweep" / "results" / "history.sqlite").exists()


def test_a_bench_run_survives_a_broken_history(tmp_path: Path, capsys: Any) -> None:
    outcome = _bench(tmp_path, history="postgres://ci:hunter2@127.0.0.1:bad/db")
    assert (outcome.run_dir / "summary.json").is_file()
    err = capsys.readouterr().err
    assert "warning: run not recorded in the history (" in err and "hunter2" not in err


# ----------------------------------------------------------------------------- the CLI


def _populate(out: Path) -> None:
    with open_history(None, out) as h:
        for s, kw in ((summary("20261201-100000-probe", "2026-12-01T10:00:00Z"), {}),
                      (summary("20261201-110000-probe", "2026-12-01T11:00:00Z", disturbed=True, p95=0.9), {}),
                      (summary("20261201-120000-probe", "2026-12-01T12:00:00Z", p95=0.3), {"branch": "feature"})):
            d = write_run(out, s)
            h.record(record_from_summary(s, d, "bench", git={**GIT, **kw}, host=HOST))
        gated = out / "20261201-120000-probe"
        h.record(record_from_summary(summary("20261201-120000-probe", "2026-12-01T12:00:00Z", p95=0.3), gated,
                                     "gate", "fail", git={**GIT, "branch": "feature"}, host=HOST))
    write_run(out, summary("20261130-090000-probe", "2026-11-30T09:00:00Z"))  # a run the history never saw


def test_results_list_reads_the_history_and_the_directories(tmp_path: Path) -> None:
    _populate(tmp_path)
    res = runner.invoke(app, ["results", "list", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [(r["run_id"], r["kind"], r["source"]) for r in rows] == [
        ("20261201-120000-probe", "bench", "history"), ("20261201-120000-probe", "gate", "history"),
        ("20261201-110000-probe", "bench", "history"), ("20261201-100000-probe", "bench", "history"),
        ("20261130-090000-probe", "bench", "directory")]
    for r in rows:
        assert OLD_LIST_KEYS | {"disturbed", "git_branch", "git_commit", "gate_verdict", "p99_s"} <= set(r)
    assert [r["disturbed"] for r in rows] == [False, False, True, False, False]
    assert rows[1]["gate_verdict"] == "fail" and rows[4]["git_branch"] is None

    res = runner.invoke(app, ["results", "list", "--out", str(tmp_path), "--json", "--branch", "feature",
                              "--kind", "bench"])
    assert [r["run_id"] for r in json.loads(res.stdout)] == ["20261201-120000-probe"]
    res = runner.invoke(app, ["results", "list", "--out", str(tmp_path), "--json", "--scenario", "other"])
    assert json.loads(res.stdout) == []

    res = runner.invoke(app, ["results", "list", "--out", str(tmp_path)], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "disturbed" in res.stdout and "DISTURBED" in res.stdout and "feature" in res.stdout


def test_results_list_without_a_history_scans_the_directories(tmp_path: Path) -> None:
    write_run(tmp_path, summary("20261130-090000-probe", "2026-11-30T09:00:00Z", disturbed=True))
    res = runner.invoke(app, ["results", "list", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)
    assert row["source"] == "directory" and row["disturbed"] is True and row["p95"] == 0.25
    assert not (tmp_path / "history.sqlite").exists()  # listing creates nothing


def test_results_list_bad_flags_exit_2_with_one_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["results", "list", "--out", str(tmp_path), "--history", "mysql://u:hunter2@h/d"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "hunter2" not in res.stderr
    assert res.stderr.startswith("error: history URL 'mysql://h/d' is not supported; use postgresql://")
    res = runner.invoke(app, ["results", "list", "--out", str(tmp_path), "--kind", "soak"])
    assert res.exit_code == 2 and "--kind must be one of bench, sweep, gate" in res.stderr


def test_results_trend_writes_a_self_contained_chart(tmp_path: Path) -> None:
    _populate(tmp_path)
    html = tmp_path / "trend.html"
    res = runner.invoke(app, ["results", "trend", "--scenario", "probe", "--results", str(tmp_path),
                              "--out", str(html)])
    assert res.exit_code == 0, res.output
    text = html.read_text()
    assert len(text) > 1_000_000  # plotly inlined: opens offline
    for run_id in ("20261201-100000-probe", "20261201-110000-probe", "20261201-120000-probe"):
        assert run_id in text
    assert "20261130-090000-probe" not in text  # only what the history holds
    assert "disturbed run (busy host)" in text and '"symbol":"x"' in text
    assert "gate: fail" in text and "gate: pass" not in text
    assert GIT["commit"][:12] in text and "feature" in text

    res = runner.invoke(app, ["results", "trend", "--scenario", "probe", "--branch", "feature",
                              "--results", str(tmp_path), "--out", str(tmp_path / "feature.html")])
    assert res.exit_code == 0
    assert "20261201-100000-probe" not in (tmp_path / "feature.html").read_text()


def test_results_trend_without_runs_of_the_scenario_exits_2(tmp_path: Path) -> None:
    res = runner.invoke(app, ["results", "trend", "--scenario", "probe", "--results", str(tmp_path)])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: no run history at ")
    _populate(tmp_path)
    res = runner.invoke(app, ["results", "trend", "--scenario", "nope", "--results", str(tmp_path)])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "has no bench run of scenario 'nope'" in res.stderr


def test_results_help_has_examples() -> None:
    for cmd in ("list", "trend"):
        res = runner.invoke(app, ["results", cmd, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0 and f"asrtk results {cmd} " in res.stdout and "--history" in res.stdout
