"""The gate's verdict as data: one :class:`GateResult` per gate run, made of :class:`Check` s.

Every output (the console table, ``--json``, ``--junit``, ``--summary-md``) is rendered from
this structure and nothing else. Verdicts are ``pass``, ``fail`` and ``inconclusive``; exit
codes 0, 3 and 4 (``EXIT_CODES``), with ``--inconclusive fail|pass`` mapping the last.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = "asrtk.gate/v1"
VERDICTS = ("pass", "fail", "inconclusive")
EXIT_CODES = {"pass": 0, "fail": 3, "inconclusive": 4}


@dataclass(frozen=True)
class Check:
    """One judged figure.

    ``kind`` is ``threshold`` (an absolute bound, e.g. ``p95<=1.2s``) or ``compare`` (the change
    against the baseline must stay within ``--max-regression``). ``figure`` is the summary key
    judged (``latency_s.p95``, ``requests.error_rate``, ``load.achieved_rps``,
    ``host.target_cpu_s_per_request``, ...), ``unit`` its unit (``s``, ``ratio``, ``rps``, ``""``).

    For ``compare``: ``baseline`` and ``measured`` are the two runs' figures, ``change`` the
    relative change (``measured / baseline - 1``, positive = worse for "lower is better"
    figures, i.e. signed so that > 0 is a regression), ``ci`` its confidence interval (same
    sign convention) and ``allowed`` the tolerance as a string (``"+10%"``).
    For ``threshold``: ``measured`` against ``allowed`` (``"<= 1.2 s"``); ``ci`` may hold the
    measured figure's own interval when the verdict depends on it.
    ``message`` is one human line saying why (shown as the JUnit failure message).
    """

    name: str
    kind: str
    figure: str
    verdict: str
    measured: float | None
    allowed: str
    unit: str = ""
    baseline: float | None = None
    change: float | None = None
    ci: tuple[float, float] | None = None
    message: str = ""


@dataclass(frozen=True)
class RunRef:
    """A run the gate judged: its id and directory, what it ran against, where it came from."""

    run_id: str
    path: str
    scenario: str | None = None
    target: str | None = None
    label: str | None = None
    git_commit: str | None = None
    git_branch: str | None = None
    disturbed: bool | None = None
    loadgen_valid: bool | None = None


@dataclass
class GateResult:
    """The whole verdict. ``verdict`` is ``fail`` when any check fails, else ``inconclusive``
    when any check or ``reasons`` make a verdict impossible, else ``pass``. ``exit_code``
    applies the ``--inconclusive`` policy. ``runs`` lists the current runs (more than one when
    the gate measured again because the interval straddled the tolerance; for ``ab`` mode, the
    new build's runs) and ``baselines`` the baseline runs (the old build's, in ``ab`` mode)."""

    verdict: str
    exit_code: int
    mode: str  # "compare" (two run sets), "ab" (interleaved builds), "thresholds" (no baseline)
    checks: list[Check]
    reasons: list[str] = field(default_factory=list)  # why inconclusive, beyond the checks
    runs: list[RunRef] = field(default_factory=list)
    baselines: list[RunRef] = field(default_factory=list)
    max_regression: float | None = None
    confidence: float = 0.95
    inconclusive_policy: str = "inconclusive"  # or "fail" / "pass"
    created: str = ""  # ISO 8601 UTC
    duration_s: float | None = None
    scenario: str | None = None
    schema: str = SCHEMA

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for c in d["checks"]:
            if c["ci"] is not None:
                c["ci"] = list(c["ci"])
        return d


def combine(checks: list[Check], reasons: list[str]) -> str:
    """The overall verdict from the checks and extra reasons (see :class:`GateResult`)."""
    if any(c.verdict == "fail" for c in checks):
        return "fail"
    if reasons or any(c.verdict == "inconclusive" for c in checks):
        return "inconclusive"
    return "pass"


def exit_code(verdict: str, policy: str = "inconclusive") -> int:
    """0 pass, 3 fail, 4 inconclusive; ``policy`` "fail"/"pass" maps inconclusive to 3/0."""
    if verdict == "inconclusive" and policy in ("fail", "pass"):
        return EXIT_CODES[policy]
    return EXIT_CODES[verdict]
