"""The driver's one I/O seam: a transport sends a prepared request and says what came back.

:class:`RawHttpTarget` is the real one for ``http://`` targets: HTTP/1.1 keep-alive over
gevent sockets, each prepared request serialized once, responses parsed by httptools (C).
It does per request only what a measurement needs, which makes the load generator cheaper
per request than Locust's own FastHttpUser (benchmarks/loadgen.py measures the ratio).
:class:`HttpTarget` (Locust's FastHttpSession, geventhttpclient) serves ``https://``.
:func:`http_target` picks one. :class:`MockTransport` answers from a function, for tests.
Failures are data (:class:`SendResult` with an error class), never exceptions. Importing
this module does not import Locust: ``HttpTarget`` does, when it is built.
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
    retry_after: str | None = None  # the response's Retry-After header, as sent


CACHE_HEADER = "X-Cache"


def cache_status(headers: Mapping[str, str] | None) -> str | None:
    """``hit`` or ``miss`` from a response's ``X-Cache`` header (case-insensitive name and value);
    None without the header. A value that does not start with ``hit`` counts as a miss."""
    value = _header(headers, CACHE_HEADER)
    if value is None:
        return None
    return "hit" if value.strip().lower().startswith("hit") else "miss"


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
    if isinstance(exc, (HTTPParseError, _ProtocolError)):
        return "protocol"
    try:
        import httptools

        if isinstance(exc, httptools.HttpParserError):
            return "protocol"
    except ImportError:  # pragma: no cover - httptools is a dependency
        pass
    return "other"


class _ProtocolError(Exception):
    """A response that is not HTTP/1.x as RawHttpTarget reads it."""


def http_result(req: PreparedRequest, status: int, content: bytes, error: BaseException | None = None,
                headers: Mapping[str, str] | None = None) -> SendResult:
    """What an HTTP exchange amounts to: ``status`` 0 (no response) is classified from
    ``error``; a status other than the request's ``expect_status`` is ``http_<status>``;
    ``headers`` (the response's) say whether a cache answered (``X-Cache``)."""
    sent = len(req.body or b"")
    if status == 0:
        return SendResult(False, classify_exception(error), 0, sent, len(content))
    retry_after = _header(headers, "Retry-After")
    if status != req.expect_status:
        return SendResult(False, f"http_{status}", status, sent, len(content), retry_after=retry_after)
    out_s = wav_duration_s(content) if req.output_audio else None
    return SendResult(True, None, status, sent, len(content), out_s, cache_status(headers), retry_after)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        low = name.lower()
        value = next((v for k, v in headers.items() if str(k).lower() == low), None)
    return None if value is None else str(value)


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


HEAD_CACHE_ENTRIES = 4096


class _Response:
    """httptools callbacks for one response: the status, the two headers a measurement reads, the
    body. Only X-Cache and Retry-After are kept (their names lower-cased)."""

    __slots__ = ("body", "complete", "framed", "head_done", "headers", "keep", "parser")

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.headers: dict[str, str] = {}
        self.complete = False
        self.framed = False  # Content-Length or chunked; else the body ends with the connection
        self.keep = False
        self.head_done = False
        self.parser: Any = None

    def on_headers_complete(self) -> None:
        self.keep = self.parser.should_keep_alive()  # llhttp knows it only until the message completes
        self.head_done = True
        self.parser = None  # no parser <-> callbacks cycle left for the garbage collector

    def on_header(self, name: bytes, value: bytes) -> None:
        n = name.lower()
        if n in (b"x-cache", b"retry-after"):
            self.headers[n.decode("latin-1")] = value.decode("latin-1")
        elif n in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class RawHttpTarget:
    """HTTP/1.1 with keep-alive over gevent sockets, for ``http://`` targets.

    Each :class:`PreparedRequest` is serialized to bytes once (request line, headers, body) and
    then written with one ``sendall``; the response is parsed by httptools. Idle connections are
    kept for reuse (at most ``concurrency``). A request that fails on a *reused* connection
    before any response byte arrived is sent once more on a fresh one: the server closed an idle
    keep-alive connection, which says nothing about the request. Nothing else is retried.
    ``timeout_s`` bounds the whole exchange, connect included (``connect_timeout_s`` the
    connect alone)."""

    def __init__(self, base_url: str, concurrency: int, timeout_s: float, connect_timeout_s: float = 10.0,
                 user_agent: str = "asrtk") -> None:
        from urllib.parse import urlsplit

        u = urlsplit(base_url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"RawHttpTarget serves http://HOST[:PORT] targets, got {base_url!r}")
        self.host, self.port = u.hostname, u.port or 80
        self.prefix = u.path.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == 80 else f"{host}:{self.port}"
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(connect_timeout_s, timeout_s)
        self.max_idle = max(1, int(concurrency))
        self.user_agent = user_agent
        self._idle: list[Any] = []
        self._heads: dict[int, tuple[PreparedRequest, bytes]] = {}

    def head(self, req: PreparedRequest) -> bytes:
        """The request line and headers, built on first use and kept for the next send of the same
        request (a bounded cache: a catalog builds payloads on demand and lets them go)."""
        hit = self._heads.get(id(req))
        if hit is not None and hit[0] is req:
            return hit[1]
        body = req.body or b""
        lines = [f"{req.method} {self.prefix}{req.path} HTTP/1.1", f"Host: {self.host_header}",
                 f"User-Agent: {self.user_agent}"]
        given = {k.lower() for k in req.headers}
        lines += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() not in ("host", "content-length")]
        if body or req.method not in ("GET", "HEAD"):
            lines.append(f"Content-Length: {len(body)}")
        if "accept-encoding" not in given:
            lines.append("Accept-Encoding: identity")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if len(self._heads) >= HEAD_CACHE_ENTRIES:
            self._heads.clear()
        self._heads[id(req)] = (req, data)
        return data

    def wire(self, req: PreparedRequest) -> bytes:
        """The whole request as sent (head and body)."""
        return self.head(req) + (req.body or b"")

    def _connect(self) -> Any:
        from gevent import socket as gsocket

        sock = gsocket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)  # the exchange's gevent.Timeout bounds every read and write
        return sock

    def _exchange(self, sock: Any, head: bytes, body: bytes) -> tuple[int, bytes, dict[str, str], bool]:
        """(status, body, headers, keep-alive); :class:`_NothingBack` when the connection failed
        before a single response byte arrived."""
        import httptools

        resp = _Response()
        parser = resp.parser = httptools.HttpResponseParser(resp)
        recv = sock.recv
        try:
            if len(body) <= 65536:
                sock.sendall(head + body)  # one write: the copy costs less than a second segment
            else:
                sock.sendall(head)
                sock.sendall(body)
            chunk = recv(65536)
        except OSError as exc:
            raise _NothingBack(str(exc)) from exc
        if not chunk:
            raise _NothingBack("connection closed before a response")
        parser.feed_data(chunk)
        while not resp.complete:
            chunk = recv(65536)
            if not chunk:
                if resp.head_done and not resp.framed:
                    break  # a body delimited by the connection's end (no Content-Length): complete
                raise ConnectionResetError("connection closed before the response was complete")
            parser.feed_data(chunk)
        return parser.get_status_code(), b"".join(resp.body), resp.headers, resp.keep and resp.complete

    def send(self, req: PreparedRequest) -> SendResult:
        head, body = self.head(req), req.body or b""
        sock = None
        try:
            with gevent.Timeout(self.timeout_s):
                try:
                    reused = bool(self._idle)
                    sock = self._idle.pop() if reused else self._connect()
                    status, content, headers, keep = self._exchange(sock, head, body)
                except _NothingBack as exc:
                    _close(sock)
                    sock = None
                    if not reused:
                        raise (exc.__cause__ or ConnectionResetError(str(exc))) from None
                    # the server closed an idle keep-alive connection: once more, on a fresh one
                    sock = self._connect()
                    try:
                        status, content, headers, keep = self._exchange(sock, head, body)
                    except _NothingBack as again:
                        raise (again.__cause__ or ConnectionResetError(str(again))) from None
        except gevent.Timeout:
            _close(sock)
            return SendResult(False, "timeout", 0, len(req.body or b""), 0)
        except Exception as exc:  # noqa: BLE001 - failures are data: classified, never raised
            _close(sock)
            return http_result(req, 0, b"", exc)
        if keep and len(self._idle) < self.max_idle:
            self._idle.append(sock)
        else:
            _close(sock)
        return http_result(req, status, content, headers=headers)

    def close(self) -> None:
        """Close the idle keep-alive connections (sweeps run many benches in one process)."""
        while self._idle:
            _close(self._idle.pop())


class _NothingBack(Exception):
    """The connection failed before any byte of a response came back."""


def _close(sock: Any) -> None:
    if sock is None:
        return
    try:
        sock.close()
    except OSError:
        pass


def http_target(env: Any, base_url: str, concurrency: int, timeout_s: float) -> Transport:
    """The transport a real run sends through: :class:`RawHttpTarget` for ``http://``,
    Locust's FastHttpSession (:class:`HttpTarget`) for ``https://``."""
    if base_url.startswith("http://"):
        return RawHttpTarget(base_url, concurrency, timeout_s)
    return HttpTarget(env, base_url, concurrency, timeout_s)


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
