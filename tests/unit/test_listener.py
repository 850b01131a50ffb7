"""reference_server/listener.py on real loopback sockets: the SYN filter, the last-one-out lock,
and a close that resets nothing even when the closing process stalls (as under CPU steal)."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from reference_server.listener import AcceptingLock, drop_new_handshakes, take_queued

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="socket filters are Linux's")


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@linux_only
def test_the_filter_drops_new_handshakes_and_passes_open_connections() -> None:
    sock = _listener()
    addr = sock.getsockname()
    before = socket.create_connection(addr, timeout=5)
    time.sleep(0.05)
    accepted = sock.accept()[0]
    assert drop_new_handshakes(sock)
    late = socket.socket()
    late.settimeout(0.5)
    with pytest.raises(TimeoutError):  # the SYN is dropped: no SYN-ACK, no refusal
        late.connect(addr)
    late.close()
    accepted.setblocking(True)
    before.sendall(b"ping")
    assert accepted.recv(4) == b"ping"
    accepted.sendall(b"pong")
    assert before.recv(4) == b"pong"
    for s in (before, accepted, sock):
        s.close()


def test_only_the_last_to_stop_accepting_is_told_so(tmp_path: Path) -> None:
    path = str(tmp_path / "listener.lock")
    a, b, c = AcceptingLock(path), AcceptingLock(path), AcceptingLock(path)
    for lock in (a, b, c):
        lock.accepting()
    assert a.stopped_last() is False
    assert b.stopped_last() is False
    assert c.stopped_last() is True
    assert AcceptingLock(None).stopped_last() is True  # one process, no supervisor


def _hammer_then_close(careful: bool, stall_s: float = 0.3) -> Counter[str]:
    """Clients connect in a loop while the listener is swept and closed, the closing side
    stalling ``stall_s`` between its sweep and its close; what the clients saw."""
    sock = _listener()
    addr = sock.getsockname()
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(addr)
                s.sendall(b"x")
                outcomes["answered" if s.recv(2) == b"ok" else "closed"] += 1
            except ConnectionRefusedError:
                outcomes["refused"] += 1
            except ConnectionResetError:
                outcomes["reset"] += 1
            except TimeoutError:
                outcomes["timeout"] += 1
            finally:
                s.close()

    serving = threading.Event()
    serving.set()

    def serve() -> None:  # the worker, answering while it accepts
        while serving.is_set():
            if select.select([sock], [], [], 0.01)[0]:
                with contextlib.suppress(BlockingIOError):
                    conn = sock.accept()[0]
                    conn.setblocking(True)
                    conn.sendall(b"ok")
                    conn.close()

    server = threading.Thread(target=serve)
    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in [server, *threads]:
        t.start()
    time.sleep(0.3)
    serving.clear()  # it stops accepting (the event loop's reader removed)
    server.join(5)
    for conn in asyncio.run(take_queued([sock], last=careful)):
        conn.setblocking(True)
        conn.sendall(b"ok")
        conn.close()
    time.sleep(stall_s)  # descheduled between the sweep and the close: clients go on connecting
    sock.close()
    time.sleep(1.5)  # a dropped SYN is retried after a second: refused then
    stop.set()
    for t in threads:
        t.join(10)
    return outcomes


@linux_only
def test_a_stalled_close_resets_connections_unless_handshakes_were_stopped_first() -> None:
    careless = _hammer_then_close(careful=False)
    assert careless["reset"] > 0, careless  # the race this guards against, shown by the same harness
    careful = _hammer_then_close(careful=True)
    assert careful["reset"] == 0 and careful["timeout"] == 0, careful
    assert careful["refused"] > 0, careful
