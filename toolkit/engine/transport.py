"""The driver's one I/O seam: a transport sends a prepared request and says what came back.

:class:`HttpTarget` is the real one (Locust's FastHttpSession, geventhttpclient);
:class:`MockTransport` answers from a function, for tests. Failures are data
(:class:`SendResult` with an error class), never exceptions. Importing this module does
not import Locust: ``HttpTarget`` does, when it is built.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import gevent

from toolkit.engine.requests import PreparedRequest, wav_duration_s


@dataclass
class SendResult:
    ok: bool
    error_class: str | None  # None when ok; "timeout", "connection", "protocol", "http_503", ...
    status: int  # 0 when no HTTP status came back
    bytes_sent: int
    bytes_received: int
    output_audio_s: float | None = None  # TTS: duration of the returned audio
    cache: str | None = None  # "hit" or "miss" from the response's X-Cache header; None without one


CACHE_HEADER = "X-Cache"


def cache_status(headers: Mapping[str, str] | None) -> str | None:
    """``hit`` or ``miss`` from a response's ``X-Cache`` header (case-insensitive name and value);
    None without the header. A value that does not start with ``hit`` counts as a miss."""
    if not headers:
        return None
    value = headers.get(CACHE_HEADER)
    if value is None:
        value = next((v for k, v in headers.items() if str(k).lower() == "x-cache"), None)
    if value is None:
        return None
    return "hit" if str(value).strip().lower().startswith("hit") else "miss"


class Transport(Protocol):
    """What the driver sends through. ``send`` never raises for a failed request."""

    def send(self, req: PreparedRequest) -> SendResult: ...

    def close(self) -> None: ...


def classify_exception(exc: BaseException | None) -> str:
    """Error class of a failed request that got no HTTP status."""
    from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError

    if exc is None:
        return "other"
    # geventhttpclient wraps what the socket raised (RetriesExceeded(original=timed out) when
    # max_retries is 0): judge the original, else every timeout would count as "other"
    seen = 0
    while seen < 5 and getattr(exc, "original", None) is not None and isinstance(exc.original, BaseException):
        exc, seen = exc.original, seen + 1
    if isinstance(exc, (gevent.Timeout, socket.timeout, TimeoutError)):
        return "timeout"
    # HTTPConnectionClosed is an HTTPParseError: test it first
    if isinstance(exc, (ConnectionError, HTTPConnectionClosed, socket.gaierror, OSError)):
        return "connection"
    if isinstance(exc, HTTPParseError):
        return "protocol"
    return "other"


def http_result(req: PreparedRequest, status: int, content: bytes, error: BaseException | None = None,
                headers: Mapping[str, str] | None = None) -> SendResult:
    """What an HTTP exchange amounts to: ``status`` 0 (no response) is classified from
    ``error``; a status other than the request's ``expect_status`` is ``http_<status>``;
    ``headers`` (the response's) say whether a cache answered (``X-Cache``)."""
    sent = len(req.body or b"")
    if status == 0:
        return SendResult(False, classify_exception(error), 0, sent, len(content))
    if status != req.expect_status:
        return SendResult(False, f"http_{status}", status, sent, len(content))
    out_s = wav_duration_s(content) if req.output_audio else None
    return SendResult(True, None, status, sent, len(content), out_s, cache_status(headers))


class _NullHook:
    """Stands in for Locust's ``request`` event when there is no Locust environment."""

    def fire(self, **kwargs: Any) -> None:
        pass


NULL_REQUEST_EVENT = _NullHook()


class HttpTarget:
    """Sends a prepared request through Locust's FastHttpSession (geventhttpclient), which
    also fires Locust's ``request`` event (``env`` None: no event). Building one imports
    Locust, which monkey-patches the process: real runs import it first thing anyway."""

    def __init__(self, env: Any, base_url: str, concurrency: int, timeout_s: float) -> None:
        from locust.contrib.fasthttp import FastHttpSession

        self.timeout_s = timeout_s
        self.session = FastHttpSession(
            base_url=base_url.rstrip("/"),
            request_event=env.events.request if env is not None else NULL_REQUEST_EVENT,
            user=None,
            concurrency=concurrency,
            network_timeout=timeout_s,
            connection_timeout=min(10.0, timeout_s),
            max_retries=0,
            insecure=True,
        )

    def send(self, req: PreparedRequest) -> SendResult:
        try:
            with gevent.Timeout(self.timeout_s):
                resp = self.session.request(req.method, req.path, name=req.name, data=req.body,
                                            headers=dict(req.headers))
        except gevent.Timeout:
            return SendResult(False, "timeout", 0, len(req.body or b""), 0)
        status = int(getattr(resp, "status_code", 0) or 0)
        try:
            content = resp.content or b""
        except Exception:  # noqa: BLE001 - a body that cannot be read is a connection error
            content = b""
        return http_result(req, status, content, getattr(resp, "error", None), getattr(resp, "headers", None))

    def close(self) -> None:
        """Close idle keep-alive connections (sweeps run many benches in one process)."""
        try:
            self.session.client.close()
        except Exception:  # noqa: BLE001 - closing idle connections is best effort
            pass


class MockTransport:
    """A transport that answers from ``handler(req)``, for tests (like httpx's MockTransport).

    The handler returns a :class:`SendResult`, or an HTTP status (``int``), ``(status, body)``
    or ``(status, body, headers)``, judged as :class:`HttpTarget` judges a response; or it
    raises as the network would, and the exception becomes its :func:`classify_exception`
    class. To simulate service time, the handler sleeps on the driver's clock.
    """

    def __init__(self, handler: Callable[[PreparedRequest], SendResult | int | tuple[int, bytes]
                                         | tuple[int, bytes, Mapping[str, str]]]) -> None:
        self.handler = handler
        self.closed = False

    def send(self, req: PreparedRequest) -> SendResult:
        try:
            res = self.handler(req)
        except (Exception, gevent.Timeout) as exc:  # noqa: BLE001 - what the network would raise
            return http_result(req, 0, b"", exc)
        if isinstance(res, SendResult):
            return res
        if isinstance(res, int):
            return http_result(req, res, b"")
        status, content, *rest = res
        return http_result(req, status, content, headers=rest[0] if rest else None)

    def close(self) -> None:
        self.closed = True
