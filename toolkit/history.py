"""The run history: one row per bench, sweep and gate run, in SQLite or PostgreSQL.

Every run directory stays the source of truth; the history is an index of their key figures,
with where they ran (host fingerprint) and what code they measured (git commit and branch),
so that ``asrtk results list`` / ``trend`` can look across runs and machines and the gate can
resolve ``--baseline history:BRANCH`` (:meth:`History.latest`).

Where it lives (:func:`open_history`): ``<results>/history.sqlite`` by default,
``ASRTK_HISTORY_URL`` or an explicit URL otherwise: ``postgresql://user:pass@host[:port]/db``
(shared by CI machines; needs ``psycopg``, imported only then) or ``sqlite:///PATH``
(SQLAlchemy's form: ``sqlite:///rel/path.sqlite``, ``sqlite:////abs/path.sqlite``). Both
backends run the same SQL: a table ``runs`` keyed by (run_id, kind, path), an index on
(scenario, git_branch, created) and a one-row ``asrtk_schema_version`` table.

No orchestrator or CLI is imported here; the only processes started are ``git`` (see
:func:`git_info`), and nothing goes to the network except a PostgreSQL history.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from toolkit.errors import ConfigError, NoDataError, TargetError, UsageError
from toolkit.units import public_url

SCHEMA_VERSION = 1
KINDS = ("bench", "sweep", "gate")
GATE_VERDICTS = ("pass", "fail", "inconclusive")
ENV_URL = "ASRTK_HISTORY_URL"
DEFAULT_FILE = "history.sqlite"
ACCEPTED = ("postgresql://USER:PASSWORD@HOST[:PORT]/DB, sqlite:///PATH (sqlite:////ABSOLUTE/PATH), "
            f"or nothing for RESULTS/{DEFAULT_FILE}")


# ----------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class RunRecord:
    """One run as the history holds it. Figures are null when the run did not measure them.

    ``created`` is the run's start, ISO 8601 UTC with microseconds (``...T12:00:00.000000Z``) so
    that it sorts as text. ``path`` is the run directory (absolute, on the machine that ran it).
    For a sweep, ``rps`` is ``max_rps_at_slo`` and the latencies and error rate are those of the
    best step. ``cpu_source`` says where ``cpu_s_per_request`` came from: ``local`` (the target's
    processes on the load host) or ``metrics`` (the target's own CPU counter).
    """

    run_id: str
    kind: str
    scenario: str | None
    created: str
    path: str
    target: str | None = None
    git_commit: str | None = None
    git_branch: str | None = None
    label: str | None = None
    host_fingerprint: str | None = None
    host_name: str | None = None
    host_cpu: str | None = None
    host_cores: int | None = None
    host_memory_bytes: int | None = None
    host_os: str | None = None
    disturbed: bool | None = None
    valid: bool | None = None
    complete: bool = True
    slo_passed: bool | None = None
    rps: float | None = None
    p50_s: float | None = None
    p95_s: float | None = None
    p99_s: float | None = None
    error_rate: float | None = None
    cpu_s_per_request: float | None = None
    cpu_source: str | None = None
    rtf_p95: float | None = None
    gate_verdict: str | None = None
    # what a gate on another machine needs to use this run as its baseline (bench runs only):
    # the summary.json as JSON text and the measured window's latency histogram (HDR, base64)
    summary_json: str | None = None
    latency_hdr: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"run {self.run_id!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.gate_verdict is not None and self.gate_verdict not in GATE_VERDICTS:
            raise ConfigError(f"run {self.run_id!r}: gate verdict must be one of {', '.join(GATE_VERDICTS)}, "
                              f"got {self.gate_verdict!r}")
        if not self.run_id or not self.path:
            raise ConfigError("a history record needs a run_id and a path")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


COLUMNS = tuple(f.name for f in fields(RunRecord))
_BOOLS = {"disturbed", "valid", "complete", "slo_passed"}
_INTS = {"host_cores", "host_memory_bytes"}
_REALS = {"rps", "p50_s", "p95_s", "p99_s", "error_rate", "cpu_s_per_request", "rtf_p95"}
_KEY = ("run_id", "kind", "path")


def _sql_type(name: str) -> str:
    if name in _BOOLS:
        return "INTEGER NOT NULL" if name == "complete" else "INTEGER"  # 0/1: one SQL for both backends
    if name in _INTS:
        return "BIGINT"
    if name in _REALS:
        return "DOUBLE PRECISION"
    return "TEXT NOT NULL" if name in _KEY + ("created",) else "TEXT"


SCHEMA_SQL = (
    "CREATE TABLE IF NOT EXISTS asrtk_schema_version (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (\n    "
    + ",\n    ".join(f"{c} {_sql_type(c)}" for c in COLUMNS)
    + f",\n    PRIMARY KEY ({', '.join(_KEY)})\n)",
    "CREATE INDEX IF NOT EXISTS runs_scenario_branch_created ON runs (scenario, git_branch, created)",
)
_INSERT = (
    f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) "
    f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c not in _KEY)
)
_ORDER = "ORDER BY created DESC, run_id DESC, kind, path"


def _to_row(rec: RunRecord) -> tuple[Any, ...]:
    values = ((c, getattr(rec, c)) for c in COLUMNS)
    return tuple(int(v) if c in _BOOLS and v is not None else v for c, v in values)


def _from_row(row: Sequence[Any]) -> RunRecord:
    return RunRecord(**{c: (bool(v) if c in _BOOLS and v is not None else v) for c, v in zip(COLUMNS, row)})


# ----------------------------------------------------------------------------- building records


def normalize_created(value: Any) -> str:
    """An ISO 8601 time as UTC with microseconds and ``Z``: the history's sortable text form.
    Missing or unreadable: now."""
    dt = None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            dt = None
    if dt is None:
        dt = datetime.now(timezone.utc)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _get(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, Mapping):
            return None
        d = d.get(part)
    return d


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _flag(v: Any) -> bool | None:
    return bool(v) if v is not None else None


def _cpu(summary: Mapping[str, Any]) -> tuple[float | None, str | None]:
    v = _num(_get(summary, "host.target_cpu_s_per_request"))
    if v is not None:
        return v, "local"
    v = _num(_get(summary, "server.cpu_s_per_request"))
    return (v, "metrics") if v is not None else (None, None)


def _valid(s: Mapping[str, Any]) -> bool | None:
    from toolkit.results import run_valid

    return _flag(run_valid(s))


def _bench_figures(s: Mapping[str, Any]) -> dict[str, Any]:
    cpu, source = _cpu(s)
    return {
        "run_id": s.get("run_id"), "scenario": _get(s, "scenario.name"), "created": s.get("created"),
        "target": _get(s, "target.url"), "label": s.get("label"),
        "disturbed": _flag(_get(s, "host.disturbed")), "valid": _valid(s),
        "complete": bool(s.get("complete")), "slo_passed": _flag(_get(s, "slo.passed")),
        "rps": _num(_get(s, "load.achieved_rps")), "p50_s": _num(_get(s, "latency_s.p50")),
        "p95_s": _num(_get(s, "latency_s.p95")), "p99_s": _num(_get(s, "latency_s.p99")),
        "error_rate": _num(_get(s, "requests.error_rate")), "cpu_s_per_request": cpu, "cpu_source": source,
        "rtf_p95": _num(_get(s, "rtf.p95")),
    }


def _sweep_figures(doc: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """A capacity document (``asrtk.capacity/v1``): the search's result and its best step."""
    result = doc.get("result") or {}
    at = result.get("at_best") or {}
    steps = [s for s in doc.get("steps") or [] if isinstance(s, Mapping)]
    best = result.get("best_step")
    best_step = steps[best] if isinstance(best, int) and 0 <= best < len(steps) else {}
    valid = [s.get("loadgen_valid") for s in steps if s.get("loadgen_valid") is not None]
    disturbed = [bool(_get(s, "host.disturbed")) for s in steps if _get(s, "host.disturbed") is not None]
    sweep_id = doc.get("sweep_id")
    src = best_step.get("cpu_source")
    return {
        "run_id": f"sweep-{sweep_id}" if sweep_id and "/" not in str(sweep_id) else Path(run_dir).name,
        "scenario": _get(doc, "scenario.name"), "created": doc.get("created"), "target": _get(doc, "target.url"),
        "label": doc.get("label"),
        "disturbed": any(disturbed) if disturbed else None, "valid": all(valid) if valid else None,
        "complete": True, "slo_passed": result.get("max_rps_at_slo") is not None,
        "rps": _num(result.get("max_rps_at_slo")), "p50_s": _num(at.get("p50_s")), "p95_s": _num(at.get("p95_s")),
        "p99_s": _num(at.get("p99_s")), "error_rate": _num(at.get("error_rate")),
        "cpu_s_per_request": _num(best_step.get("cpu_s_per_request")),
        "cpu_source": src if isinstance(src, str) else None, "rtf_p95": None,
    }


def record_from_summary(
    summary: Mapping[str, Any],
    run_dir: Path,
    kind: str,
    gate_verdict: str | None = None,
    *,
    git: Mapping[str, Any] | None = None,
    host: Mapping[str, Any] | None = None,
) -> RunRecord:
    """The history record of a run: ``summary`` is its ``summary.json`` (bench, gate: the
    judged run's) or, for a sweep, its ``capacity.json``. ``git`` and ``host`` default to
    :func:`git_info` of the current directory and :func:`host_fingerprint`."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    is_capacity = str(summary.get("schema", "")).startswith("asrtk.capacity/")
    figures = _sweep_figures(summary, run_dir) if is_capacity else _bench_figures(summary)
    g = git if git is not None else git_info(Path.cwd())
    h = host if host is not None else host_fingerprint()
    target = figures.pop("target")
    scenario = figures.pop("scenario")
    return RunRecord(
        run_id=str(figures.pop("run_id") or Path(run_dir).name),
        created=normalize_created(figures.pop("created")),
        scenario=str(scenario) if scenario is not None else None,
        kind=kind,
        path=str(Path(run_dir).resolve()),
        target=public_url(target) if isinstance(target, str) and target else None,
        git_commit=g.get("commit"), git_branch=g.get("branch"),
        host_fingerprint=h.get("fingerprint"), host_name=h.get("hostname"), host_cpu=h.get("cpu_model"),
        host_cores=h.get("cores"), host_memory_bytes=h.get("memory_bytes"), host_os=h.get("os"),
        gate_verdict=gate_verdict,
        **figures,
        **({} if is_capacity else _portable(summary, Path(run_dir))),
    )


def _portable(summary: Mapping[str, Any], run_dir: Path) -> dict[str, str | None]:
    """The summary and the latency histogram of a bench run, so that the history alone can serve
    as a baseline on another machine (``asrtk gate --baseline history:BRANCH``)."""
    from toolkit.recorder import encode
    from toolkit.results import FILES, _finite_json, read_latency_histogram

    hist = read_latency_histogram(run_dir / FILES["latency_log"], float(summary.get("warmup_s") or 0.0))
    return {"summary_json": json.dumps(_finite_json(dict(summary)), sort_keys=True, allow_nan=False, default=str),
            "latency_hdr": encode(hist) if hist is not None else None}


# ----------------------------------------------------------------------------- where a run ran


def _git(cwd: Path, *args: str) -> str | None:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = p.stdout.strip()
    return out if p.returncode == 0 and out else None


def git_info(cwd: Path, env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """``{"commit", "branch", "source"}`` of the code being measured.

    From ``git`` when ``cwd`` is in a work tree; otherwise (or for the branch of a detached
    HEAD, as CI checkouts often are) from the CI's variables: GitHub Actions ``GITHUB_SHA``,
    ``GITHUB_HEAD_REF`` (a pull request's branch) then ``GITHUB_REF_NAME``; GitLab
    ``CI_COMMIT_SHA``, ``CI_COMMIT_REF_NAME``. ``source`` is ``git``, ``env`` or None.
    """
    env = os.environ if env is None else env
    commit = branch = source = None
    if Path(cwd).is_dir() and _git(Path(cwd), "rev-parse", "--is-inside-work-tree") == "true":
        commit = _git(Path(cwd), "rev-parse", "HEAD")
        branch = _git(Path(cwd), "symbolic-ref", "--short", "-q", "HEAD")  # None when detached
        source = "git" if commit else None
    env_commit = env.get("GITHUB_SHA") or env.get("CI_COMMIT_SHA") or None
    env_branch = env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or env.get("CI_COMMIT_REF_NAME") or None
    if commit is None and env_commit:
        commit, source = env_commit, "env"
    if branch is None and env_branch:
        branch, source = env_branch, source or "env"
    return {"commit": commit, "branch": branch, "source": source}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001 - psutil missing or unreadable: ask the OS directly
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            return None


def _os_name() -> str:
    name = f"{platform.system()} {platform.release()}".strip()
    try:
        pretty = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        pretty = None
    return f"{pretty}, {name}" if pretty else name


def fingerprint_of(parts: Mapping[str, Any]) -> str:
    """12 hex digits identifying a host from its readable parts. Memory counts in whole GiB,
    so what the kernel reserves (which moves by a few MiB between boots) does not change it."""
    mem = parts.get("memory_bytes")
    key = {"hostname": parts.get("hostname"), "cpu_model": parts.get("cpu_model"), "cores": parts.get("cores"),
           "memory_gib": round(mem / 2**30) if isinstance(mem, (int, float)) else None, "os": parts.get("os")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def host_fingerprint() -> dict[str, Any]:
    """``{"fingerprint", "hostname", "cpu_model", "cores", "memory_bytes", "os"}`` of this machine
    (read locally, no network). The same machine gives the same fingerprint; a new CPU, core
    count, memory size, OS release or hostname gives another."""
    parts = {"hostname": platform.node() or "unknown", "cpu_model": _cpu_model(), "cores": os.cpu_count(),
             "memory_bytes": _memory_bytes(), "os": _os_name()}
    return {"fingerprint": fingerprint_of(parts), **parts}


# ----------------------------------------------------------------------------- backends


class _Sqlite:
    name = "SQLite"

    def __init__(self, path: Path, create: bool) -> None:
        self.where = str(path)
        if not create and not path.is_file():
            raise NoDataError(f"no run history at {self.where!r} yet; runs are recorded by `asrtk bench` and "
                              f"`asrtk sweep` (or pass --history URL)")
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self._wal()
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot open the run history {self.where!r}: {exc}") from exc

    def _wal(self, timeout_s: float = 30.0) -> None:
        """WAL, so that runs on one machine can write at once. Switching takes an exclusive lock
        and SQLite answers "locked" at once, without its busy timeout, while another connection
        (two runs opening a new file) holds one: retry for a bounded time."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise ConfigError(f"run history {self.where!r}: {exc}") from exc

    @contextmanager
    def transaction(self, lock: bool = False) -> Iterator[None]:
        self.execute("BEGIN IMMEDIATE" if lock else "BEGIN")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def _pg_where(url: str) -> tuple[str, str | None]:
    """``host:port`` of a PostgreSQL URL and its password (to keep out of messages)."""
    parts = urlsplit(url)
    q = parse_qs(parts.query)
    try:
        port = parts.port or int((q.get("port") or ["5432"])[0])
    except ValueError:
        raise UsageError(f"history URL {public_url(url)!r} has an invalid port; use {ACCEPTED}") from None
    host = parts.hostname or (q.get("host") or ["localhost"])[0]
    password = parts.password or (q.get("password") or [None])[0]
    return f"{host}:{port}", unquote(password) if password else None


def _reason(exc: BaseException, secret: str | None) -> str:
    """psycopg's message as one line, the part after its last ``failed:``, without the password."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    text = re.sub(r"\s+", " ", text.rsplit("failed: ", 1)[-1]).strip()
    text = re.sub(r"^(FATAL|ERROR):\s*", "", text)
    for s in {secret, secret and secret.replace("%", "%25")} - {None, ""}:
        text = text.replace(s, "***")  # type: ignore[arg-type]
    return text or type(exc).__name__


class _Postgres:
    name = "PostgreSQL"

    def __init__(self, url: str) -> None:
        self.where, self._secret = _pg_where(url)
        try:
            import psycopg
        except ImportError as exc:
            raise UsageError("a postgresql:// history needs psycopg: pip install 'psycopg[binary]>=3.1'") from exc
        self._errors = psycopg.Error
        try:
            self.conn = psycopg.connect(url, connect_timeout=5, autocommit=True, application_name="asrtk")
        except psycopg.Error as exc:  # `from None`: libpq's chain must not reach a --debug traceback
            raise TargetError(f"cannot connect to the run history at PostgreSQL {self.where} "
                              f"({_reason(exc, self._secret)}); check that the server runs and the URL "
                              f"(--history or {ENV_URL})") from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = self.conn.execute(sql.replace("?", "%s"), tuple(params))
            return cur.fetchall() if cur.description else []
        except self._errors as exc:
            raise TargetError(f"run history at PostgreSQL {self.where}: {_reason(exc, self._secret)}") from None

    @contextmanager
    def transaction(self, lock: bool = False) -> Iterator[None]:
        try:
            with self.conn.transaction():
                if lock:  # two machines creating the tables at once: one waits for the other
                    self.execute("SELECT pg_advisory_xact_lock(7214031)")
                yield
        except self._errors as exc:
            raise TargetError(f"run history at PostgreSQL {self.where}: {_reason(exc, self._secret)}") from None

    def close(self) -> None:
        self.conn.close()


# ----------------------------------------------------------------------------- the history


class History:
    """A run history (use :func:`open_history`). A context manager; :meth:`close` when done.
    One connection: use it from the thread that opened it (open one per thread)."""

    def __init__(self, backend: _Sqlite | _Postgres) -> None:
        self._db = backend
        self._ensure_schema()

    @property
    def where(self) -> str:
        """Where the history is, for messages: a file path, or ``PostgreSQL host:port``."""
        return self._db.where if isinstance(self._db, _Sqlite) else f"PostgreSQL {self._db.where}"

    def _ensure_schema(self) -> None:
        with self._db.transaction(lock=True):
            for stmt in SCHEMA_SQL:
                self._db.execute(stmt)
            self._db.execute("INSERT INTO asrtk_schema_version (id, version) VALUES (1, ?) "
                             "ON CONFLICT (id) DO NOTHING", (SCHEMA_VERSION,))
            version = self._db.execute("SELECT version FROM asrtk_schema_version WHERE id = 1")[0][0]
        if version > SCHEMA_VERSION:
            raise ConfigError(f"the run history at {self.where} has schema version {version}; this asrtk "
                              f"reads version {SCHEMA_VERSION}: upgrade asrtk")

    def record(self, rec: RunRecord) -> None:
        """Add a run; recording the same (run_id, kind, path) again replaces it."""
        with self._db.transaction():
            self._db.execute(_INSERT, _to_row(rec))

    def runs(self, scenario: str | None = None, branch: str | None = None, kind: str | None = None,
             limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first, filtered by scenario, git branch and kind."""
        where, params = [], []
        for col, value in (("scenario", scenario), ("git_branch", branch), ("kind", kind)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        sql = f"SELECT {', '.join(COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " " + _ORDER
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [_from_row(r) for r in self._db.execute(sql, params)]

    def latest(self, scenario: str, branch: str, kind: str = "bench", valid_only: bool = True,
               host_fingerprint: str | None = None) -> RunRecord | None:
        """The baseline for ``--baseline history:BRANCH``: the newest run of ``scenario`` on
        ``branch``; with ``valid_only``, the newest complete one whose load generator kept its
        schedule (valid) on a quiet host (not disturbed; unknown counts as quiet). With
        ``host_fingerprint``, only runs from that host."""
        where = ["scenario = ?", "git_branch = ?", "kind = ?"]
        params: list[Any] = [scenario, branch, kind]
        if valid_only:
            where += ["complete = 1", "valid = 1", "COALESCE(disturbed, 0) = 0"]
        if host_fingerprint is not None:
            where.append("host_fingerprint = ?")
            params.append(host_fingerprint)
        rows = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM runs WHERE {' AND '.join(where)} "
                                f"{_ORDER} LIMIT 1", params)
        return _from_row(rows[0]) if rows else None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def history_url(url: str | None) -> str | None:
    """The URL in effect: ``url``, else ``ASRTK_HISTORY_URL``, else None (the default file)."""
    return url or os.environ.get(ENV_URL) or None


def check_url(url: str | None) -> None:
    """Raise :class:`UsageError` when ``url`` is not a form the history accepts (for a CLI to
    call before a run starts). The URL in messages never carries its credentials."""
    if url is None or url.startswith(("postgresql://", "postgres://")):
        if url is not None:
            _pg_where(url)
        return
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return
    raise UsageError(f"history URL {public_url(url)!r} is not supported; use {ACCEPTED}")


def open_history(url: str | None, results_dir: Path, *, create: bool = True) -> History:
    """Open (and on first use create) the run history.

    ``url`` None: ``ASRTK_HISTORY_URL``, else SQLite at ``<results_dir>/history.sqlite``. With
    ``create`` False a missing SQLite file raises :class:`NoDataError` instead of being created.
    Raises :class:`UsageError` for another scheme and :class:`TargetError` when PostgreSQL
    cannot be reached (the message names host:port, never the password).
    """
    url = history_url(url)
    check_url(url)
    if url is None:
        return History(_Sqlite(Path(results_dir) / DEFAULT_FILE, create))
    if url.startswith("sqlite:///"):
        return History(_Sqlite(Path(url[len("sqlite:///"):]), create))
    return History(_Postgres(url))


def record_run(url: str | None, results_dir: Path, summary: Mapping[str, Any], run_dir: Path, kind: str,
               gate_verdict: str | None = None) -> RunRecord | None:
    """Record a finished run, never failing it: any problem becomes one warning line on stderr
    (the run directory is already written) and None is returned."""
    try:
        rec = record_from_summary(summary, run_dir, kind, gate_verdict)
        with open_history(url, results_dir) as h:
            h.record(rec)
        return rec
    except Exception as exc:  # noqa: BLE001 - the history is an index; the run itself is safe on disk
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"warning: run not recorded in the history ({msg}); it is in {run_dir}", file=sys.stderr)
        return None


# ----------------------------------------------------------------------------- listing and trends


def _listing(rec: RunRecord) -> dict[str, Any]:
    """A history record in ``asrtk results list --json``'s shape (the keys of
    :func:`toolkit.results.list_runs` plus the history's)."""
    d = rec.to_dict()
    return {"run_id": rec.run_id, "scenario": rec.scenario, "created": rec.created, "complete": rec.complete,
            "valid": rec.valid, "rps": rec.rps, "p95": rec.p95_s, "error_rate": rec.error_rate,
            "slo_passed": rec.slo_passed, "path": Path(rec.path), "source": "history",
            **{k: v for k, v in d.items() if k not in ("run_id", "scenario", "created", "complete", "valid", "rps",
                                                       "error_rate", "slo_passed", "path", "summary_json",
                                                       "latency_hdr")}}


def _scanned(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run directory found by :func:`toolkit.results.list_runs`, in the same shape."""
    blank = {c: None for c in COLUMNS if c not in ("run_id", "scenario", "created", "complete", "valid", "rps",
                                                  "error_rate", "slo_passed", "path")}
    summary: Mapping[str, Any] = {}
    try:
        from toolkit.results import read_summary

        summary = read_summary(Path(run["path"]))
    except ConfigError:
        pass
    figures = _bench_figures(summary) if summary else {}
    extra = {k: figures.get(k) for k in ("target", "label", "disturbed", "p50_s", "p95_s", "p99_s",
                                         "cpu_s_per_request", "cpu_source", "rtf_p95")}
    return {**dict(run), **blank, **{k: v for k, v in extra.items() if v is not None}, "kind": "bench",
            "source": "directory"}


def merged_runs(out: Path, url: str | None, *, scenario: str | None = None, branch: str | None = None,
                kind: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """What ``asrtk results list`` shows, newest first: the history's runs, then the run
    directories under ``out`` that it does not hold (older runs, or runs recorded elsewhere).

    A default history that does not exist yet is skipped (nothing is created); a directory
    run has no branch, so ``branch`` leaves those out.
    """
    from toolkit.results import list_runs

    rows: list[dict[str, Any]] = []
    try:
        with open_history(url, out, create=False) as h:
            rows = [_listing(r) for r in h.runs(scenario=scenario, branch=branch, kind=kind)]
    except NoDataError:
        pass
    if branch is None and kind in (None, "bench"):
        known = {str(Path(r["path"]).resolve()) for r in rows if r["kind"] == "bench"}
        rows += [_scanned(r) for r in list_runs(out)
                 if str(Path(r["path"]).resolve()) not in known and (scenario is None or r["scenario"] == scenario)]
    rows.sort(key=lambda r: (normalize_created(r["created"]), str(r["run_id"])), reverse=True)
    return rows[:limit] if limit is not None else rows


_GATE_MARKERS = {"pass": ("#2ca02c", "triangle-up"), "fail": ("#d62728", "triangle-down"),
                 "inconclusive": ("#ff9f1c", "diamond")}
_DISTURBED_NAME = "disturbed run (busy host)"


def trend_html(runs: Sequence[RunRecord], gates: Sequence[RunRecord] = (), *, scenario: str,
               branch: str | None = None) -> str:
    """A self-contained HTML page (plotly.js basic bundle inlined) charting ``runs`` in time order: p95/p99
    latency, throughput, error rate and CPU per request. Disturbed runs carry an ``x`` marker
    (legend: "disturbed run (busy host)"); ``gates`` (kind gate) are marked on the latency chart
    by verdict. Pure: records in, text out."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = [("latency (s)", [("p95", "p95_s"), ("p99", "p99_s")]), ("throughput (req/s)", [("rps", "rps")]),
              ("error rate", [("error rate", "error_rate")]),
              ("target CPU per request (s)", [("CPU s/request", "cpu_s_per_request")])]
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[p[0] for p in panels])
    ordered = sorted(runs, key=lambda r: (r.created, r.run_id))
    hover = ("%{customdata[0]}<br>%{y:.4g}<br>commit %{customdata[1]}<br>branch %{customdata[2]}"
             "<br>%{customdata[3]}<extra>%{fullData.name}</extra>")

    def custom(rs: Sequence[RunRecord], extra: str = "") -> list[list[str]]:
        return [[r.run_id, (r.git_commit or "?")[:12], r.git_branch or "?",
                 extra or ("DISTURBED host" if r.disturbed else "") + ("" if r.valid is not False else " INVALID")]
                for r in rs]

    x = [r.created for r in ordered]
    shown_disturbed = False
    for row, (_title, series) in enumerate(panels, start=1):
        for name, attr in series:
            fig.add_trace(go.Scatter(x=x, y=[getattr(r, attr) for r in ordered], mode="lines+markers", name=name,
                                     customdata=custom(ordered), hovertemplate=hover, legendgroup=name),
                          row=row, col=1)
            bad = [r for r in ordered if r.disturbed]
            if bad:
                fig.add_trace(go.Scatter(
                    x=[r.created for r in bad], y=[getattr(r, attr) for r in bad], mode="markers",
                    name=_DISTURBED_NAME, legendgroup="disturbed", showlegend=not shown_disturbed,
                    marker=dict(symbol="x", size=13, color="#7f7f7f", line=dict(width=1)),
                    customdata=custom(bad), hovertemplate=hover), row=row, col=1)
                shown_disturbed = True
    for verdict, (color, symbol) in _GATE_MARKERS.items():
        gs = sorted((g for g in gates if g.gate_verdict == verdict), key=lambda r: r.created)
        if gs:
            fig.add_trace(go.Scatter(
                x=[g.created for g in gs], y=[g.p95_s for g in gs], mode="markers", name=f"gate: {verdict}",
                marker=dict(symbol=symbol, size=15, color=color, line=dict(width=1, color="#333")),
                customdata=custom(gs, f"gate {verdict.upper()}"), hovertemplate=hover), row=1, col=1)
    title = f"asrtk trend: {scenario}" + (f" on {branch}" if branch else "")
    from toolkit import plotjs

    fig.update_layout(title=title, height=260 * len(panels), **plotjs.LAYOUT, hovermode="closest",
                      margin=dict(l=70, r=20, t=80, b=50), legend=dict(orientation="h", y=-0.05))
    fig.update_yaxes(rangemode="tozero")
    fig.update_xaxes(title_text="run start (UTC)", row=len(panels), col=1)
    return plotjs.page(title, plotjs.figure_html(fig, div_id="trend"))
