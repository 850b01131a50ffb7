"""Threshold expressions (``--threshold 'p95<=1.2s'``) and the figures a gate can judge.

A figure is a name users type (``p95``, ``error_rate``, ``rps``, ...) bound to a key of the
``asrtk.result/v1`` summary, a unit and a direction (is a higher value worse?). Values take the
units of :mod:`toolkit.units`: durations (``1.2s``, ``800ms``), ratios (``1%``, ``0.01``),
plain numbers for rates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from toolkit.errors import UsageError
from toolkit.units import parse_duration, parse_ratio


@dataclass(frozen=True)
class Figure:
    name: str
    key: str  # dotted summary key; "cpu_per_request" has two sources (see value_of)
    unit: str  # "s", "ratio", "rps", ""
    higher_is_worse: bool
    what: str


def _lat(p: str) -> Figure:
    return Figure(p, f"latency_s.{p}", "s", True, f"latency {p} of successful requests")


FIGURES: dict[str, Figure] = {f.name: f for f in (
    _lat("p50"), _lat("p90"), _lat("p95"), _lat("p99"), _lat("p99.9"), _lat("max"),
    Figure("error_rate", "requests.error_rate", "ratio", True, "failed / all requests"),
    Figure("rps", "throughput.rps", "rps", False, "successful requests per second"),
    Figure("rtf_p50", "rtf.p50", "", True, "real-time factor p50"),
    Figure("rtf_p95", "rtf.p95", "", True, "real-time factor p95"),
    Figure("rtf_p99", "rtf.p99", "", True, "real-time factor p99"),
    Figure("partial_p95", "stream.partial_latency_s.p95", "s", True, "streaming partial-result latency p95"),
    Figure("final_p95", "stream.final_latency_s.p95", "s", True, "streaming final-result latency p95"),
    Figure("cpu_per_request", "host.target_cpu_s_per_request", "s", True,
           "target CPU seconds per request (its /metrics counter, else its local processes)"),
)}

_EXPR_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=|<|>)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Threshold:
    figure: Figure
    op: str
    value: float
    text: str  # as the user typed it, normalised ("p95<=1.2s")

    def holds(self, measured: float) -> bool:
        return {"<=": measured <= self.value, "<": measured < self.value,
                ">=": measured >= self.value, ">": measured > self.value}[self.op]

    @property
    def allowed(self) -> str:
        return f"{self.op} {format_value(self.value, self.figure.unit)}"


def _suggest(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(FIGURES), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_threshold(text: str, flag: str = "--threshold") -> Threshold:
    """``p95<=1.2s``, ``error_rate<=1%``, ``rps>=40``, ``cpu_per_request<12ms`` -> Threshold."""
    m = _EXPR_RE.match(text or "")
    if not m:
        raise UsageError(f"{flag} must look like 'p95<=1.2s', 'error_rate<=1%' or 'rps>=40', got {text!r}")
    name, op, raw = m.groups()
    name = name.lower()
    fig = FIGURES.get(name)
    if fig is None:
        raise UsageError(f"{flag} {text!r}: unknown figure {name!r}{_suggest(name)}; known: {', '.join(FIGURES)}")
    if fig.unit == "s":
        value = parse_duration(raw, f"{flag} {name}", allow_zero=True)
    elif fig.unit == "ratio":
        value = parse_ratio(raw, f"{flag} {name}")
    else:
        try:
            value = float(raw.removesuffix("rps"))
        except ValueError:
            raise UsageError(f"{flag} {text!r}: {raw!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{flag} {text!r}: the value must be a number >= 0")
    return Threshold(fig, op, value, f"{name}{op}{raw}")


def parse_percent_change(text: str, flag: str = "--max-regression") -> float:
    """``10%`` or ``0.1`` -> 0.1 (a relative change; 0 allowed, below 100%)."""
    return parse_ratio(text, flag)


def value_of(summary: Mapping[str, Any], fig: Figure) -> float | None:
    """The figure's value in one run's summary (None when the run has none)."""
    if fig.name == "cpu_per_request":
        host = (summary.get("host") or {}).get("target_cpu_s_per_request")
        server = (summary.get("server") or {}).get("cpu_s_per_request")
        v = server if server is not None else host
    else:
        v: Any = summary
        for part in fig.key.split("."):
            v = v.get(part) if isinstance(v, Mapping) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def format_value(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "s":
        return f"{v * 1000:.3g} ms" if abs(v) < 1 else f"{v:.3g} s"
    if unit == "ratio":
        return f"{v * 100:.3g}%"
    if unit == "rps":
        return f"{v:.3g} rps"
    return f"{v:.3g}"
