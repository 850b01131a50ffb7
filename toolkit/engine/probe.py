"""Probing a target before load: is it reachable, does it expose /metrics, which local
processes serve it. Plain blocking I/O (urllib, psutil); every function takes the URL and
headers it needs and nothing else.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from toolkit.errors import TargetError
from toolkit.units import public_url


def preflight(base_url: str, headers: dict[str, str], timeout_s: float = 5.0) -> int:
    """Any HTTP answer from the target proves it is reachable; returns the status of GET /ready
    (or of GET / when /ready is 404). Unreachable: :class:`TargetError` naming the fix."""
    for path in ("/ready", "/"):
        req = urllib.request.Request(base_url + path, headers=headers, method="GET")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - the user's target
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            if path == "/ready" and exc.code == 404:
                continue
            return int(exc.code)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TargetError(
                f"target {public_url(base_url)} is unreachable ({reason}); start it or fix --target"
            ) from None
    return 0


def has_metrics(base_url: str, headers: dict[str, str]) -> bool:
    """Whether the target answers GET /metrics with a Prometheus text exposition."""
    try:
        req = urllib.request.Request(base_url + "/metrics", headers=headers)
        with urllib.request.urlopen(req, timeout=3.0) as resp:  # noqa: S310
            head = resp.read(65536).decode("utf-8", errors="replace")
        return resp.status == 200 and ("# TYPE" in head or "# HELP" in head)
    except Exception:  # noqa: BLE001 - no /metrics is normal for other targets
        return False


def fetcher(base_url: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    """A ``fetch(url) -> text`` for the metrics scrapers: the target's headers go only to the target."""

    def fetch(url: str) -> str:
        # the same origin only: http://127.0.0.1:80 must not hand its headers to http://127.0.0.1:8001
        same_origin = url == base_url or url.startswith(base_url + "/")
        req = urllib.request.Request(url, headers=headers if same_origin else {})
        with urllib.request.urlopen(req, timeout=2.0) as resp:  # noqa: S310
            return resp.read().decode("utf-8", errors="replace")

    return fetch


def local_target_pids(base_url: str, server: Any = None) -> list[int]:
    """The processes serving a target on this host: the one listening on its port (an embedded
    server's own pid as a fallback). Remote targets: []."""
    from toolkit.samplers import listening_pids
    from toolkit.units import is_loopback

    parts = urlsplit(base_url)
    pids: set[int] = set()
    if parts.hostname and is_loopback(parts.hostname):
        port = parts.port or (443 if parts.scheme == "https" else 80)
        pids.update(listening_pids(port))
    if server is not None and getattr(server, "pid", 0):
        pids.add(int(server.pid))
    # a worker process under a listening supervisor is covered by the supervisor's tree
    return sorted(pids)
