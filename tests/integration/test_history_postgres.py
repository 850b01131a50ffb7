"""The run history against a real PostgreSQL server, and the same behaviour on SQLite.

The session fixture runs Debian's server binaries (``/usr/lib/postgresql/*/bin``): ``initdb``
into a temporary directory, ``pg_ctl start`` on 127.0.0.1 with a free port and its unix socket
in that directory, a readiness poll, then a database per test owned by a user with a password.
Teardown: ``pg_ctl stop -m fast`` (the postmaster PID from ``postmaster.pid``, killed by that
PID only if it outlives the stop), then the directory goes. As root, PostgreSQL refuses to run:
the binaries run as the ``postgres`` system user (``runuser -u postgres --``).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from toolkit.cli.main import app
from toolkit.errors import TargetError
from toolkit.history import History, RunRecord, open_history, record_from_summary
from toolkit.results import SCHEMA

pytestmark = pytest.mark.integration

USER = "asrtk_ci"
PASSWORD = f"pw-{secrets.token_hex(8)}"  # unique: a message that contains it is caught
START_TIMEOUT_S = 60.0
GIT = {"commit": "ab" * 20, "branch": "main", "source": "git"}
HOST = {"fingerprint": "0123456789ab", "hostname": "ci-1", "cpu_model": "Test CPU", "cores": 2,
        "memory_bytes": 8 * 2**30, "os": "Linux 6.1"}


def _bindir() -> Path | None:
    """The newest Debian PostgreSQL with both initdb and pg_ctl, else the ones on PATH."""
    def version(p: str) -> tuple[int, ...]:
        v = Path(p).parent.parent.name
        return tuple(int(x) for x in v.split(".") if x.isdigit())

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True):
        if (Path(initdb).parent / "pg_ctl").is_file():
            return Path(initdb).parent
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return Path(initdb).parent if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    port: int
    sockdir: Path
    admin_user: str

    def url(self, db: str, user: str = USER, password: str = PASSWORD, port: int | None = None) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{port or self.port}/{db}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(host=str(self.sockdir), port=self.port, user=self.admin_user, dbname="postgres",
                               autocommit=True, connect_timeout=5)


def _run(cmd: list[str], what: str, timeout: float = 120.0) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if p.returncode != 0:
        pytest.fail(f"{what} failed ({p.returncode}): {(p.stdout + p.stderr).strip()[-2000:]}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb, pg_ctl); "
                    "./scripts/test.sh installs the Debian package postgresql")
    as_pg: list[str] = []
    admin = pwd.getpwuid(os.geteuid()).pw_name
    base = Path(tempfile.mkdtemp(prefix="asrtk-pg-"))
    base.chmod(0o755)  # traversable by the server's user
    data, sock, log = base / "data", base / "sock", base / "server.log"
    data.mkdir(mode=0o700)
    sock.mkdir()
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            pytest.fail("running as root needs the 'postgres' system user (the Debian package postgresql makes it)")
        for p in (data, sock):
            os.chown(p, pg.pw_uid, pg.pw_gid)
        log.touch()
        os.chown(log, pg.pw_uid, pg.pw_gid)
        as_pg, admin = ["runuser", "-u", "postgres", "--"], "postgres"
    port = _free_port()
    pid: int | None = None
    try:
        _run([*as_pg, str(bindir / "initdb"), "-D", str(data), "-U", admin, "--auth-local=trust",
              "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"], "initdb")
        opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=40")
        _run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-W", "-o", opts, "start"],
             "pg_ctl start", timeout=30)
        server = PgServer(port, sock, admin)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # poll until it accepts connections
            if pid is None and (data / "postmaster.pid").is_file():
                first = (data / "postmaster.pid").read_text().split("\n", 1)[0].strip()
                pid = int(first) if first.isdigit() else None
            try:
                with server.admin() as conn:
                    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(USER), sql.Literal(PASSWORD)))
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    pytest.fail(f"PostgreSQL did not accept connections within {START_TIMEOUT_S:.0f} s: "
                                f"{log.read_text()[-2000:]}")
                time.sleep(0.05)
        yield server
    finally:
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "stop", "-m", "fast", "-w", "-t", "60"],
                       capture_output=True, timeout=90, check=False)
        if pid is not None:
            _wait_gone(pid)
        shutil.rmtree(base, ignore_errors=True)


def _wait_gone(pid: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)  # the postmaster this fixture started outlived pg_ctl stop


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh database owned by USER: its URL, with the password."""
    db = f"history_{secrets.token_hex(4)}"
    with pg_server.admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(USER)))
    yield pg_server.url(db)
    with pg_server.admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))


@pytest.fixture(autouse=True)
def _no_history_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASRTK_HISTORY_URL", raising=False)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], History]:
    """``store()`` opens a new History on one shared store: a SQLite file or a PostgreSQL database."""
    if request.param == "sqlite":
        return lambda: open_history(None, tmp_path)
    url = request.getfixturevalue("pg_url")
    return lambda: open_history(url, tmp_path)


def rec(run_id: str, created: str, *, scenario: str = "probe", branch: str = "main", kind: str = "bench",
        verdict: str | None = None, disturbed: bool = False, valid: bool = True, complete: bool = True,
        p95: float = 0.25, path: str | None = None) -> RunRecord:
    summary = {
        "schema": SCHEMA, "run_id": run_id, "created": created, "complete": complete, "label": "ci job 7",
        "scenario": {"name": scenario}, "target": {"url": "http://gpu-1:8000"}, "load": {"achieved_rps": 12.5},
        "requests": {"error_rate": 0.002}, "latency_s": {"p50": p95 / 2, "p95": p95, "p99": p95 * 2},
        "rtf": {"p95": 0.2}, "slo": {"passed": True}, "loadgen": {"valid": valid},
        "host": {"disturbed": disturbed, "target_cpu_s_per_request": None}, "server": {"cpu_s_per_request": 0.04},
    }
    return record_from_summary(summary, Path(path or f"/runs/{run_id}"), kind, verdict,
                               git={**GIT, "branch": branch}, host=HOST)


# ----------------------------------------------------------------------------- both backends


def test_record_list_filters_and_round_trip(store: Callable[[], History]) -> None:
    with store() as h:
        h.record(rec("a", "2026-12-01T10:00:00Z"))
        h.record(rec("b", "2026-12-01T11:00:00.5Z", branch="feature"))
        h.record(rec("c", "2026-12-01T12:00:00Z", scenario="other"))
        h.record(rec("b", "2026-12-01T11:00:00.5Z", kind="gate", verdict="inconclusive", branch="feature"))
        assert [r.run_id for r in h.runs()] == ["c", "b", "b", "a"]
        assert [r.run_id for r in h.runs(scenario="probe", branch="main")] == ["a"]
        assert [(r.kind, r.gate_verdict) for r in h.runs(kind="gate")] == [("gate", "inconclusive")]
        assert [r.run_id for r in h.runs(limit=1)] == ["c"]
        stored = h.runs(scenario="other")[0]
        assert stored == rec("c", "2026-12-01T12:00:00Z", scenario="other")  # every field, bools as bools
        assert stored.cpu_s_per_request == 0.04 and stored.cpu_source == "metrics"
        assert isinstance(stored.disturbed, bool) and isinstance(stored.host_memory_bytes, int)


def test_recording_again_replaces_the_run(store: Callable[[], History]) -> None:
    with store() as h:
        for p95 in (0.5, 0.5, 0.7):
            h.record(rec("a", "2026-12-01T10:00:00Z", p95=p95))
        assert [(r.run_id, r.p95_s) for r in h.runs()] == [("a", 0.7)]
    with store() as h:  # and it persisted
        assert len(h.runs()) == 1


def test_latest_is_the_baseline_rule(store: Callable[[], History]) -> None:
    with store() as h:
        h.record(rec("good", "2026-12-01T10:00:00Z"))
        h.record(rec("disturbed", "2026-12-01T11:00:00Z", disturbed=True))
        h.record(rec("invalid", "2026-12-01T12:00:00Z", valid=False))
        h.record(rec("incomplete", "2026-12-01T13:00:00Z", complete=False))
        h.record(rec("feature", "2026-12-01T14:00:00Z", branch="feature"))
        assert h.latest("probe", "main").run_id == "good"
        assert h.latest("probe", "main", valid_only=False).run_id == "incomplete"
        assert h.latest("probe", "feature").run_id == "feature"
        assert h.latest("other", "main") is None


def test_two_machines_writing_at_once_see_each_others_runs(store: Callable[[], History]) -> None:
    barrier = threading.Barrier(2)
    seen: dict[str, set[str]] = {}
    errors: list[BaseException] = []

    def machine(name: str) -> None:
        try:
            barrier.wait(timeout=30)  # both create the schema at the same moment
            with store() as h:
                barrier.wait(timeout=30)
                for i in range(15):
                    h.record(rec(f"{name}-{i:02d}", f"2026-12-01T10:{i:02d}:00Z", path=f"/{name}/{i}"))
                barrier.wait(timeout=30)
                seen[name] = {r.run_id for r in h.runs()}
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=machine, args=(n,)) for n in ("ci-a", "ci-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    everything = {f"{n}-{i:02d}" for n in ("ci-a", "ci-b") for i in range(15)}
    assert seen == {"ci-a": everything, "ci-b": everything}


# ----------------------------------------------------------------------------- PostgreSQL only


def test_postgres_gets_the_same_schema(pg_url: str, tmp_path: Path) -> None:
    open_history(pg_url, tmp_path).close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM asrtk_schema_version").fetchall() == [(1,)]
        idx = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'runs'")}
    assert "runs_scenario_branch_created" in idx
    assert not (tmp_path / "history.sqlite").exists()


def test_the_env_url_selects_postgres(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASRTK_HISTORY_URL", pg_url)
    with open_history(None, tmp_path) as h:
        h.record(rec("via-env", "2026-12-01T10:00:00Z"))
        assert h.where.startswith("PostgreSQL 127.0.0.1:")
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT run_id FROM runs").fetchall() == [("via-env",)]


def test_results_list_and_trend_read_postgres(pg_url: str, tmp_path: Path) -> None:
    with open_history(pg_url, tmp_path) as h:
        h.record(rec("20261201-100000-probe", "2026-12-01T10:00:00Z"))
        h.record(rec("20261201-110000-probe", "2026-12-01T11:00:00Z", disturbed=True))
    runner = CliRunner()
    res = runner.invoke(app, ["results", "list", "--out", str(tmp_path), "--history", pg_url, "--json"])
    assert res.exit_code == 0, res.output
    assert [(r["run_id"], r["disturbed"]) for r in json.loads(res.stdout)] == [
        ("20261201-110000-probe", True), ("20261201-100000-probe", False)]
    out = tmp_path / "trend.html"
    res = runner.invoke(app, ["results", "trend", "--scenario", "probe", "--history", pg_url, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "20261201-110000-probe" in out.read_text() and "disturbed run (busy host)" in out.read_text()


def test_an_unreachable_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    with pytest.raises(TargetError) as e:
        open_history(f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/asrtk", tmp_path)
    msg = str(e.value)
    assert f"127.0.0.1:{port}" in msg and PASSWORD not in msg and "\n" not in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__  # `--debug` prints no psycopg chain


def test_a_wrong_password_is_an_error_without_either_password(pg_server: PgServer, pg_url: str,
                                                              tmp_path: Path) -> None:
    wrong = f"wrong-{secrets.token_hex(6)}"
    db = pg_url.rsplit("/", 1)[1]
    with pytest.raises(TargetError) as e:
        open_history(pg_server.url(db, password=wrong), tmp_path)
    msg = str(e.value)
    assert f"127.0.0.1:{pg_server.port}" in msg and "password authentication failed" in msg
    assert wrong not in msg and PASSWORD not in msg and "\n" not in msg


def test_the_cli_shows_an_unreachable_history_as_one_line(tmp_path: Path) -> None:
    port = _free_port()
    res = CliRunner().invoke(app, ["results", "list", "--out", str(tmp_path), "--history",
                                   f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/asrtk"])
    assert res.exit_code == 1 and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"error: cannot connect to the run history at PostgreSQL 127.0.0.1:{port} (")
    assert PASSWORD not in res.output
