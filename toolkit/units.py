"""The one parser of every value users type in more than one place (pure).

Flags, scenario YAML, plan files and environment overrides all go through these functions,
so ``--slo p95=2s`` means the same to ``bench``, ``sweep``, ``plan`` and ``generate``:

=====================  ==============================================  =====================
value                  accepted                                        result
=====================  ==============================================  =====================
duration               ``20``, ``20s``, ``1.5s``, ``500ms``, ``2m``,   seconds (float, > 0)
                       ``2min``, ``1h``
SLO                    ``p95=2s``, ``p99.9=500ms`` (p50 <= p < p100)   (0.95, 2.0)
ratio / error rate     ``1%``, ``0.01``, ``0`` (0 <= r < 1)            0.01
size                   ``1048576``, ``512k``, ``20MiB``, ``19MB``,     bytes (int, > 0)
                       ``1.5GiB`` (k/M/G = 1000^n, Ki/Mi/Gi = 1024^n)
host:port[:weight]     ``gpu-1:8000``, ``10.0.0.5:8000:3``,            :class:`HostPort`
                       ``[::1]:9000``
target URL             ``http://host:port[/path]``                     (base URL, path or None)
URL list               ``http://a/metrics,http://b/metrics`` (and      [URL, ...]
                       repeated flags)
pid list               ``1200,1300`` (and repeated flags)              [1200, 1300]
=====================  ==============================================  =====================

Every error is a one-line :class:`~toolkit.errors.UsageError` that names the flag (or key)
and shows an example of what is accepted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from toolkit.errors import UsageError

_NUMBER = r"(\d+(?:\.\d+)?|\.\d+)"
_DURATION_RE = re.compile(rf"^\s*{_NUMBER}\s*(ms|s|sec|m|min|h)?\s*$", re.IGNORECASE)
_UNIT_S = {None: 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}
_SLO_RE = re.compile(r"^\s*p(\d+(?:\.\d+)?)\s*=\s*(.+)$", re.IGNORECASE)
_SIZE_RE = re.compile(rf"^\s*{_NUMBER}\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNIT = {None: 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}
_HOSTPORT_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})(?::(\d+))?$")

# Percentiles every summary carries (p50..p99.9): an SLO outside them cannot be judged.
SLO_PERCENTILE_MIN = 50.0


def parse_duration(text: str | float | int, flag: str, *, allow_zero: bool = False) -> float:
    """``20``, ``20s``, ``1.5s``, ``500ms``, ``2m``, ``1h`` -> seconds. A bare number is seconds."""
    if isinstance(text, bool):
        raise UsageError(f"{flag} must be a duration like 20s, 500ms or 2m, got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _DURATION_RE.match(str(text))
        if not m:
            raise UsageError(f"{flag} must be a duration like 20s, 500ms or 2m, got {text!r}")
        value = float(m.group(1)) * _UNIT_S[m.group(2).lower() if m.group(2) else None]
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{flag} must be {'>= 0' if allow_zero else '> 0'} (a duration like 20s), got {text!r}")
    return value


def parse_slo(text: str, flag: str = "--slo") -> tuple[float, float]:
    """``p95=2s`` -> (0.95, 2.0); ``p99.9=500ms`` -> (0.999, 0.5)."""
    m = _SLO_RE.match(str(text))
    if not m:
        raise UsageError(f"{flag} must look like p95=2s (percentile=latency), got {text!r}")
    pct = float(m.group(1))
    if not SLO_PERCENTILE_MIN <= pct < 100:
        raise UsageError(f"{flag}: the percentile must be between p50 and p99.99, got p{m.group(1)}")
    return pct / 100.0, parse_duration(m.group(2), flag)


def format_slo(percentile: float, latency_s: float) -> str:
    """The inverse of :func:`parse_slo`: (0.95, 1.5) -> ``p95=1.5s``."""
    return f"p{percentile * 100:g}={latency_s:g}s"


def parse_ratio(text: str | float, flag: str) -> float:
    """``1%`` or ``0.01`` -> 0.01; 0 is allowed (no error at all may happen), 100% is not."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100.0 if s.endswith("%") else float(s)
    except ValueError:
        raise UsageError(f"{flag} must be a ratio like 1% or 0.01, got {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise UsageError(f"{flag} must be between 0% and 100% (exclusive), got {text!r}")
    return value


def parse_size(text: str | int, flag: str) -> int:
    """``1048576``, ``512k``, ``20MiB``, ``19MB``, ``1.5GiB`` -> bytes (k/M/G decimal, Ki/Mi/Gi binary)."""
    if isinstance(text, bool):
        raise UsageError(f"{flag} must be a size like 20MiB, 512k or 1048576 (bytes), got {text!r}")
    if isinstance(text, int):
        value = float(text)
    else:
        m = _SIZE_RE.match(str(text))
        if not m:
            raise UsageError(f"{flag} must be a size like 20MiB, 512k or 1048576 (bytes), got {text!r}")
        unit = (m.group(2) or "").lower().rstrip("b") or None
        value = float(m.group(1)) * _SIZE_UNIT[unit]
    if not math.isfinite(value) or value < 1:
        raise UsageError(f"{flag} must be at least 1 byte, got {text!r}")
    return int(math.ceil(value))


def parse_cpu(text: str, flag: str) -> int:
    """``4``, ``0.5`` (cores) or ``500m`` (millicores, as Kubernetes writes them) -> millicores."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) if s.endswith("m") else float(s) * 1000.0
    except ValueError:
        raise UsageError(f"{flag} must be cores like 4 or 0.5, or millicores like 500m, got {text!r}") from None
    if not (math.isfinite(value) and value >= 1):
        raise UsageError(f"{flag} must be at least 1m (0.001 cores), got {text!r}")
    return int(math.ceil(value))


@dataclass(frozen=True)
class HostPort:
    """``HOST:PORT[:WEIGHT]``; ``address`` is ``host:port`` as nginx and Prometheus write it."""

    host: str
    port: int
    weight: int | None = None  # None: not given

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_hostport(text: str, flag: str, *, weight: bool = True) -> HostPort:
    """``gpu-1:8000``, ``gpu-1:8000:3`` (weight >= 1), ``[::1]:9000`` (IPv6 in brackets)."""
    example = "gpu-1:8000:3" if weight else "gpu-1:8000"
    form = "HOST:PORT[:WEIGHT]" if weight else "HOST:PORT"
    m = _HOSTPORT_RE.match(str(text).strip())
    if not m or (m.group(3) is not None and not weight):
        raise UsageError(f"{flag} {text!r} is not {form}, e.g. {example}")
    port = int(m.group(2))
    if not 0 < port < 65536:
        raise UsageError(f"{flag} {text!r}: the port must be 1-65535")
    w = int(m.group(3)) if m.group(3) is not None else None
    if w is not None and w < 1:
        raise UsageError(f"{flag} {text!r}: the weight must be an integer >= 1")
    return HostPort(m.group(1), port, w)


_RATE_RE = re.compile(r"^\s*(\d+)\s*(?:r/(s|m))?\s*$")


def parse_rate(text: str, flag: str) -> str:
    """A request rate as nginx's ``limit_req_zone`` writes it: ``300`` / ``300r/s`` -> ``300r/s``, ``20r/m``."""
    m = _RATE_RE.match(str(text))
    if not m or int(m.group(1)) < 1:
        raise UsageError(f"{flag} must be a whole rate >= 1 like 300r/s or 20r/m, got {text!r}")
    return f"{int(m.group(1))}r/{m.group(2) or 's'}"


def parse_int_list(text: str, flag: str) -> list[int]:
    """``1,2,4`` -> [1, 2, 4] (each >= 1, no duplicates)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} must be a comma-separated list of integers like 1,2,4, got {text!r}") from None
    if not values or any(v < 1 for v in values) or len(set(values)) != len(values):
        raise UsageError(f"{flag} needs distinct integers >= 1 like 1,2,4, got {text!r}")
    return values


_NEXT_URL = re.compile(r",\s*(?=[a-z][a-z0-9+.-]*://)", re.IGNORECASE)


def parse_url_list(values: "list[str] | tuple[str, ...]", flag: str) -> list[str]:
    """A repeatable flag whose values may be comma lists of http(s) URLs -> the URLs in order, each
    once. A comma splits only where the next URL starts (``,http://``, any scheme), so a comma
    in a query (``/federate?match[]={job="a",instance="b"}``) stays in it; one in a host or path is
    refused (a list with a URL missing its scheme)."""
    out: list[str] = []
    for value in values:
        for part in _NEXT_URL.split(str(value).strip()):
            url = part.strip().rstrip(",").strip()
            if not url:
                continue
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
                raise UsageError(f"{flag} takes http(s) URLs like http://127.0.0.1:8001/metrics "
                                 f"(repeat it or separate them with commas), got {public_url(url)!r}")
            if "," in parts.netloc + parts.path:  # "http://a/metrics,b:9400/metrics": a list missing a scheme
                raise UsageError(f"{flag}: {public_url(url)!r} has a comma before its query; write every URL of "
                                 f"a list with its scheme: http://a:8001/metrics,http://b:8002/metrics")
            if url not in out:
                out.append(url)
    return out


def parse_pid_list(values: "list[str] | tuple[str, ...]", flag: str) -> list[int]:
    """A repeatable flag of process ids, each value a number or a comma list: ``['1200', '1300,1310']``
    -> [1200, 1300, 1310] (in order, each once)."""
    out: list[int] = []
    for value in values:
        for part in (p.strip() for p in str(value).split(",")):
            if not part:
                continue
            if not part.isdigit() or int(part) < 1:
                raise UsageError(f"{flag} takes process ids like 1200 or 1200,1300 (repeatable), got {part!r}")
            if int(part) not in out:
                out.append(int(part))
    return out


def parse_fractions(text: str, flag: str) -> tuple[float, ...]:
    """``0.4,0.7`` -> (0.4, 0.7), each in (0, 1]; an empty string is no fractions."""
    out = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise UsageError(f"{flag} takes fractions such as 0.5,0.7; got {part!r}") from None
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
            raise UsageError(f"{flag} takes fractions in (0, 1] such as 0.5,0.7; got {part!r}")
        out.append(value)
    return tuple(out)


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


def split_target(url: str, flag: str = "--target") -> tuple[str, str | None]:
    """``http://host:port/path`` -> (``http://host:port``, ``/path`` or None)."""
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{flag} must be an http(s) URL like http://127.0.0.1:8000, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise UsageError(f"{flag} has a bad port: {url!r}; write it like http://127.0.0.1:8000") from None
    path = parts.path.rstrip("/")
    base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return base, (path or None)


def public_url(url: str) -> str:
    """The URL without user:password (never written to results)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ``::1`` (bracketed or not) or ``localhost``; a wildcard, a name or a LAN address is not.

    The one answer to "may this listen without a secret?" (serve, the bench master, gpu-exporter).
    """
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
