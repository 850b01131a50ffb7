"""Parsers for the capacity commands' flag values (pure; errors are one-line UsageErrors)."""

from __future__ import annotations

import math
import re

from toolkit.errors import UsageError

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|min|h)?\s*$")
_UNIT_S = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}
_SLO_RE = re.compile(r"^\s*p(\d+(?:\.\d+)?)\s*=\s*(.+)$", re.IGNORECASE)


def parse_duration(text: str, flag: str) -> float:
    """``20s``, ``1.5s``, ``500ms``, ``2m``, ``20`` (seconds) -> seconds."""
    m = _DURATION_RE.match(str(text))
    if not m:
        raise UsageError(f"{flag} must be a duration like 20s, 500ms or 2m, got {text!r}")
    value = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not value > 0:
        raise UsageError(f"{flag} must be > 0, got {text!r}")
    return value


def parse_slo(text: str, flag: str = "--slo") -> tuple[float, float]:
    """``p95=2s`` -> (0.95, 2.0); ``p99.9=500ms`` -> (0.999, 0.5)."""
    m = _SLO_RE.match(str(text))
    if not m:
        raise UsageError(f"{flag} must look like p95=2s (percentile=latency), got {text!r}")
    pct = float(m.group(1))
    if not 50 <= pct < 100:
        raise UsageError(f"{flag}: the percentile must be between p50 and p99.99, got p{m.group(1)}")
    return pct / 100.0, parse_duration(m.group(2), flag)


def parse_ratio(text: str, flag: str) -> float:
    """``1%`` or ``0.01`` -> 0.01."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100.0 if s.endswith("%") else float(s)
    except ValueError:
        raise UsageError(f"{flag} must be a ratio like 1% or 0.01, got {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise UsageError(f"{flag} must be between 0% and 100% (exclusive), got {text!r}")
    return value


def parse_int_list(text: str, flag: str) -> list[int]:
    """``1,2,4`` -> [1, 2, 4] (each >= 1, no duplicates)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} must be a comma-separated list of integers like 1,2,4, got {text!r}") from None
    if not values or any(v < 1 for v in values) or len(set(values)) != len(values):
        raise UsageError(f"{flag} needs distinct integers >= 1 like 1,2,4, got {text!r}")
    return values


def parse_node(text: str) -> tuple[str, str, float | None]:
    """``NAME=FILE[:cost]`` -> (name, file, cost per hour or None)."""
    if "=" not in text:
        raise UsageError(f"--node must look like NAME=FILE[:cost], e.g. gpu-a=results/sweep-x/capacity.json:3.2, "
                         f"got {text!r}")
    name, rest = text.split("=", 1)
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UsageError(f"--node name must be letters, digits, '-', '_' or '.', got {name!r}")
    cost = None
    path = rest
    if ":" in rest:
        head, tail = rest.rsplit(":", 1)
        try:
            cost = float(tail)
            path = head
        except ValueError:
            path = rest  # a ':' inside the path, no cost
    if cost is not None and not (math.isfinite(cost) and cost >= 0):
        raise UsageError(f"--node {name}: cost per hour must be >= 0, got {cost}")
    if not path:
        raise UsageError(f"--node {name}: missing capacity file after '='")
    return name, path, cost
