"""RawHttpTarget, the load generator's HTTP/1.1 client, against a raw socket server on loopback
that answers each path in one exact way: keep-alive reuse, chunked and close-delimited bodies,
a server that closes idle connections, refusals, timeouts, malformed and truncated responses."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from toolkit.engine.requests import PreparedRequest
from toolkit.engine.transport import RawHttpTarget

pytestmark = pytest.mark.integration

RESPONSES = {
    b"/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Cache: HIT\r\n\r\nok",
    b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
    b"/busy": b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\nRetry-After: 2\r\n\r\n{}",
    b"/garbage": b"NOT HTTP AT ALL\r\n\r\n",
}


class RawServer:
    """Accepts connections; reads one request head (and Content-Length body) at a time."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                self.requests.append(head + b"\r\n\r\n" + body)
                path = head.split(b" ")[1]
                if path in RESPONSES:
                    conn.sendall(RESPONSES[path])
                elif path == b"/close":  # body delimited by the end of the connection
                    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
                    return
                elif path == b"/idle-close":  # answers, then closes the kept-alive connection
                    conn.sendall(RESPONSES[b"/ok"])
                    time.sleep(0.05)
                    return
                elif path == b"/half":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                    return
                elif path == b"/hang":
                    time.sleep(2.0)
                    return
                elif path == b"/reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return


@pytest.fixture
def server() -> Iterator[RawServer]:
    s = RawServer()
    yield s
    s.stop = True
    s.sock.close()


def _req(path: str, method: str = "POST", body: bytes | None = None, **headers: str) -> PreparedRequest:
    return PreparedRequest(method, path, headers, body, None, path)


def test_keep_alive_reuses_one_connection_and_reads_headers(server: RawServer) -> None:
    t = RawHttpTarget(f"http://127.0.0.1:{server.port}", 4, 5.0)
    req = _req("/ok", body=b"0123456789", **{"Content-Type": "application/octet-stream", "Authorization": "Bearer k"})
    for _ in range(5):
        r = t.send(req)
        assert (r.ok, r.status, r.bytes_received, r.bytes_sent, r.cache) == (True, 200, 2, 10, "hit")
    assert server.connections == 1 and len(server.requests) == 5
    head = server.requests[0].decode()
    assert head.startswith("POST /ok HTTP/1.1\r\n") and f"Host: 127.0.0.1:{server.port}\r\n" in head
    assert "Content-Length: 10\r\n" in head and "Authorization: Bearer k\r\n" in head
    assert head.endswith("\r\n\r\n0123456789")
    t.close()


def test_chunked_and_close_delimited_bodies(server: RawServer) -> None:
    t = RawHttpTarget(f"http://127.0.0.1:{server.port}", 4, 5.0)
    r = t.send(_req("/chunked", "GET"))
    assert (r.ok, r.bytes_received) == (True, 5)
    r = t.send(_req("/close", "GET"))
    assert (r.ok, r.bytes_received) == (True, len(b"until the end"))
    assert not t._idle  # a connection the server closes is not kept


def test_a_connection_the_server_closed_while_idle_is_replaced_once(server: RawServer) -> None:
    t = RawHttpTarget(f"http://127.0.0.1:{server.port}", 4, 5.0)
    assert t.send(_req("/idle-close")).ok
    time.sleep(0.2)  # the server has closed the kept connection
    r = t.send(_req("/ok"))
    assert r.ok and server.connections == 2 and len(server.requests) == 2


def test_failures_are_classified_never_raised(server: RawServer) -> None:
    t = RawHttpTarget(f"http://127.0.0.1:{server.port}", 4, 0.5)
    r = t.send(_req("/busy"))
    assert (r.ok, r.error_class, r.status, r.retry_after) == (False, "http_503", 503, "2")
    assert t.send(_req("/garbage")).error_class == "protocol"
    assert t.send(_req("/half")).error_class == "connection"
    assert t.send(_req("/reset")).error_class == "connection"
    started = time.perf_counter()
    r = t.send(_req("/hang"))
    assert r.error_class == "timeout" and time.perf_counter() - started < 1.5
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert RawHttpTarget(f"http://127.0.0.1:{free}", 1, 1.0).send(_req("/ok")).error_class == "connection"


def test_only_plain_http_urls() -> None:
    with pytest.raises(ValueError, match="http://"):
        RawHttpTarget("https://example.invalid", 1, 1.0)
    t = RawHttpTarget("http://[::1]:8080/base/", 1, 1.0)
    assert t.wire(_req("/x", "GET")).startswith(b"GET /base/x HTTP/1.1\r\nHost: [::1]:8080\r\n")
