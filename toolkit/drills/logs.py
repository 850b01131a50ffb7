"""Reading what nginx says: its access log in the drill's format, and the promises its config makes.

Pure: text in, data out (the orchestrator reads the files).

The access-log format records, per request, every upstream nginx tried (``$upstream_addr``:
``a, b`` when it retried, ``a : b`` across an internal redirect), what each answered
(``$upstream_status``) and how long each took (``$upstream_response_time``), so a drill can
count the requests that were in flight on a replica at the moment it died, and every attempt
nginx made on it afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from toolkit.drills.model import Attempt, ProxyFacts, ProxyRecord

ACCESS_LOG_NAME = "asrtk_drill"
ACCESS_LOG_FORMAT = ("$msec|$request_time|$status|$upstream_addr|$upstream_status|"
                     "$upstream_response_time|$sent_http_retry_after|$request_method|$uri")


def _addresses(text: str) -> list[str]:
    # "127.0.0.1:8001, 127.0.0.1:8002 : 127.0.0.1:8003": split on ", " and " : " (addresses hold ':')
    if text in ("", "-"):
        return []
    return [a.strip() for a in re.split(r", | : ", text) if a.strip()]


def _values(text: str) -> list[str]:
    if text in ("", "-"):
        return []
    return [v.strip() for v in re.split(r", | : ", text) if v.strip()]


def _float(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return 0.0


def parse_access_log(lines: Iterable[str], epoch0: float, uri_prefix: str = "/") -> list[ProxyRecord]:
    """Records of the lines written in :data:`ACCESS_LOG_FORMAT`, times relative to ``epoch0``
    (the epoch second of the drill's time 0). Lines of other formats, and URIs outside
    ``uri_prefix``, are skipped. Attempts are laid out backwards from the response: the last
    attempt ends when the response does, each earlier one ends where the next began."""
    out: list[ProxyRecord] = []
    for line in lines:
        parts = line.rstrip("\n").split("|")
        if len(parts) != 9 or not parts[8].startswith(uri_prefix):
            continue
        try:
            end = float(parts[0]) - epoch0
            took = float(parts[1])
            status = int(parts[2])
        except ValueError:
            continue
        addrs = _addresses(parts[3])
        codes = _values(parts[4])
        times = [_float(t) for t in _values(parts[5])]
        attempts: list[Attempt] = []
        t = end
        for i in range(len(addrs) - 1, -1, -1):
            rt = times[i] if i < len(times) else 0.0
            code = codes[i] if i < len(codes) else "-"
            attempts.append(Attempt(addrs[i], int(code) if code.isdigit() else None, t - rt, t))
            t -= rt
        retry_after = parts[6] if parts[6] not in ("", "-") else None
        out.append(ProxyRecord(start_s=end - took, end_s=end, status=status, attempts=tuple(reversed(attempts)),
                               retry_after=retry_after))
    return out


# -- the config's promises --------------------------------------------------------------------

_SERVER = re.compile(r"^\s*server\s+(\S+)([^;]*);", re.M)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")


def _seconds(text: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"not an nginx duration: {text!r}")
    value, unit = float(m.group(1)), m.group(2) or "s"
    return value / 1000.0 if unit == "ms" else value * 60.0 if unit == "m" else value


def _directive(conf: str, name: str) -> str | None:
    """The first ``name value;`` outside comments, or None."""
    for raw in conf.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith(name + " ") and line.endswith(";"):
            return line[len(name):-1].strip()
    return None


def _block(conf: str, head: str) -> str:
    start = conf.find(head)
    if start < 0:
        return ""
    depth, i = 0, conf.index("{", start)
    for j in range(i, len(conf)):
        depth += {"{": 1, "}": -1}.get(conf[j], 0)
        if depth == 0:
            return conf[i + 1:j]
    return conf[i + 1:]


def proxy_facts(conf: str, source: str = "") -> ProxyFacts:
    """The promises an nginx config (the ``asrtk.conf`` that ``asrtk generate nginx`` writes, or one
    like it) makes about failures: passive health checks, retries, timeouts, admission.
    nginx's own defaults apply to directives it does not set (max_fails 1, fail_timeout 10 s,
    proxy_next_upstream error timeout, tries unlimited, 60 s timeouts). Raises ValueError
    when there is no ``upstream`` block."""
    text = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    upstream = _block(text, "upstream ")
    if not upstream:
        raise ValueError(f"{source or 'the nginx config'}: no upstream block")
    servers: list[tuple[str, bool]] = []
    max_fails: list[int] = []
    fail_timeouts: list[float] = []
    for m in _SERVER.finditer(upstream):
        params = m.group(2).split()
        servers.append((m.group(1), "backup" in params))
        kv = dict(p.split("=", 1) for p in params if "=" in p)
        max_fails.append(int(kv.get("max_fails", "1")))
        fail_timeouts.append(_seconds(kv.get("fail_timeout", "10s")))
    if not servers:
        raise ValueError(f"{source or 'the nginx config'}: the upstream block lists no server")
    location = _block(text, "location / ") or text
    # the server-level directives hold for `location /` unless it sets its own
    server_text = _block(text, "server {") or text

    def pick(name: str) -> str | None:
        return _directive(location, name) or _directive(server_text, name)

    nxt = pick("proxy_next_upstream")
    tries = pick("proxy_next_upstream_tries")
    nxt_timeout = pick("proxy_next_upstream_timeout")
    rate = None
    zone = _directive(text, "limit_req_zone")
    if zone and re.search(r"\blimit_req\s", location):
        m = re.search(r"rate=(\d+(?:\.\d+)?)r/(s|m)", zone)
        if m:
            rate = float(m.group(1)) / (60.0 if m.group(2) == "m" else 1.0)
    status = pick("limit_req_status")
    return ProxyFacts(
        servers=tuple(servers), max_fails=min(max_fails), fail_timeout_s=max(fail_timeouts),
        next_upstream=tuple((nxt or "error timeout").split()), tries=int(tries) if tries else 0,
        connect_timeout_s=_seconds(pick("proxy_connect_timeout") or "60s"),
        read_timeout_s=_seconds(pick("proxy_read_timeout") or "60s"),
        next_upstream_timeout_s=_seconds(nxt_timeout) if nxt_timeout else 0.0,
        limit_rps=rate, limit_status=int(status) if status else 503, source=source,
    )
