"""A drill as data: what was measured (client records, nginx's log, injections, memory) and
what was judged (promises and their verdicts). Pure: no clock, no I/O.

Times are seconds on the drill's own clock: 0 is the moment its load started. The
orchestrator (``toolkit.runs.drill``) maps nginx's epoch timestamps onto it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = "asrtk.drill/v1"
DRILLS = ("kill", "restart", "hang", "overload", "failover")
EXIT_HELD, EXIT_BROKEN, EXIT_INCONCLUSIVE = 0, 3, 4


@dataclass(frozen=True)
class ClientRecord:
    """One request as the load generator saw it (latency from the intended start)."""

    intended_s: float
    done_s: float
    ok: bool
    error_class: str | None = None  # "http_502", "connection", "timeout", ...
    latency_s: float = 0.0
    retry_after: str | None = None  # the Retry-After header of a refusal, as sent


@dataclass(frozen=True)
class Attempt:
    """One upstream nginx tried for a request (``$upstream_addr``), with its status and span."""

    address: str
    status: int | None  # None: no status (nginx logs "-")
    start_s: float
    end_s: float


@dataclass(frozen=True)
class ProxyRecord:
    """One request as nginx logged it: its span, what the client got, every attempt."""

    start_s: float
    end_s: float
    status: int
    attempts: tuple[Attempt, ...] = ()
    retry_after: str | None = None


@dataclass(frozen=True)
class Event:
    """Something the drill did or saw: ``action`` is kill, sigterm, exited, start, ready, sigstop,
    sigcont, overload_start, overload_end or hook; ``replica`` its name (or "" for the fleet)."""

    t_s: float
    action: str
    replica: str = ""
    note: str = ""


@dataclass(frozen=True)
class ProxyFacts:
    """What the load balancer's config promises, read from it (``toolkit.drills.logs.proxy_facts``)."""

    servers: tuple[tuple[str, bool], ...]  # (address, backup)
    max_fails: int
    fail_timeout_s: float
    next_upstream: tuple[str, ...]  # proxy_next_upstream conditions
    tries: int  # proxy_next_upstream_tries; 0 = unlimited
    connect_timeout_s: float
    read_timeout_s: float
    next_upstream_timeout_s: float = 0.0  # 0 = unlimited
    limit_rps: float | None = None  # limit_req_zone rate
    limit_status: int = 503
    source: str = ""

    @property
    def retries_sent_posts(self) -> bool:
        """Whether a POST that already reached a server is retried on another (non_idempotent)."""
        return "non_idempotent" in self.next_upstream

    @property
    def passive_checks(self) -> bool:
        return self.max_fails > 0


@dataclass(frozen=True)
class ServerFacts:
    """What the embedded replicas were started with (unknown for a remote target)."""

    memory_budget_mb: float
    max_queue: int
    drain_grace_s: float
    drain_timeout_s: float


@dataclass(frozen=True)
class Slo:
    percentile: float
    latency_s: float


@dataclass
class DrillRun:
    """Everything measured during one drill. ``proxy`` is None when nginx's log is not available
    (a remote target), ``rss`` likewise; ``replicas`` maps a replica's name to (address, backup).
    ``window`` is the judged span (drill clock): requests intended in it are judged."""

    name: str
    window: tuple[float, float]
    requests: list[ClientRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    proxy: list[ProxyRecord] | None = None
    rss: list[tuple[float, str, int]] | None = None  # (t_s, replica, bytes)
    replicas: dict[str, tuple[str, bool]] = field(default_factory=dict)
    base_rps: float = 0.0
    note: str = ""
    # the load generator's own check (results.loadgen_verdict): valid, warnings, cpu_mean_percent,
    # schedule_lag_p99_s, late_starts; None when not measured
    loadgen: dict[str, Any] | None = None
    host: dict[str, Any] | None = None  # samplers.host_summary over the drill, plus "warnings"

    def event(self, action: str, replica: str | None = None, nth: int = 0) -> Event | None:
        """The ``nth`` event with this action (and replica), or None."""
        found = [e for e in self.events if e.action == action and (replica is None or e.replica == replica)]
        return found[nth] if len(found) > nth else None

    def address(self, replica: str) -> str | None:
        return self.replicas.get(replica, (None, False))[0]


@dataclass(frozen=True)
class Promise:
    """One promise of a drill, judged: ``held`` True / False, or None when it cannot be judged
    here (a bound that needs the fleet's internals on a remote target: reported, never guessed)."""

    key: str  # "kill.errors", "kill.ejected", ...
    text: str  # the promise, one line
    held: bool | None
    measured: str
    bound: str
    why: str = ""  # where the bound comes from

    def line(self, drill: str) -> str:
        """What broke, one line."""
        state = {True: "held", False: "BROKEN", None: "unknown"}[self.held]
        return f"{drill}: {self.text}: {state}: measured {self.measured}, bound {self.bound}" + (
            f" ({self.why})" if self.why else "")


@dataclass
class DrillResult:
    name: str
    promises: list[Promise]
    errors: int
    error_bound: int | None
    recovery_s: float | None
    recovery_bound_s: float | None
    detail: str
    wall_s: float = 0.0
    requests: int = 0
    loadgen: dict[str, Any] | None = None  # the run's load-generator check (DrillRun.loadgen)
    host: dict[str, Any] | None = None  # the run's host summary (DrillRun.host)

    @property
    def loadgen_valid(self) -> bool:
        return (self.loadgen or {}).get("valid", True) is not False

    @property
    def doubtful(self) -> bool:
        """Measured by an invalid load generator or on a disturbed host: both only inflate latency,
        so a held promise holds and a broken one may be theirs."""
        return not self.loadgen_valid or bool((self.host or {}).get("disturbed"))

    @property
    def passed(self) -> bool | None:
        """False when a promise broke; None when nothing broke but some promise is unknown."""
        if any(p.held is False for p in self.promises):
            return False
        if any(p.held is None for p in self.promises):
            return None
        return True

    @property
    def broken(self) -> list[Promise]:
        return [p for p in self.promises if p.held is False]

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` entry: name, passed, errors, error_bound, recovery_s, recovery_bound_s, detail."""
        return {
            "name": self.name, "passed": self.passed, "errors": self.errors, "error_bound": self.error_bound,
            "recovery_s": _round(self.recovery_s), "recovery_bound_s": _round(self.recovery_bound_s),
            "detail": self.detail, "wall_s": _round(self.wall_s), "requests": self.requests,
            "promises": [asdict(p) for p in self.promises], "loadgen": self.loadgen, "host": self.host,
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 3)


def exit_code(results: list[DrillResult]) -> int:
    """0 when no promise broke, 3 when one did (what CI keys on), 4 (inconclusive) when the only
    broken promises are of drills measured by an invalid load generator (behind its schedule or
    saturated) or on a host disturbed by other work: their lateness counts in every latency and
    recovery measured, so the break may be theirs."""
    broken = [r for r in results if r.passed is False]
    if not broken:
        return EXIT_HELD
    return EXIT_BROKEN if any(not r.doubtful for r in broken) else EXIT_INCONCLUSIVE
