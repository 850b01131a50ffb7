"""Closing a listening socket that several processes share without resetting a connection.

Closing the last reference to a listener resets every connection the kernel completed but
nobody accepted yet. Accepting what is queued and then closing leaves a window: a handshake
that completes between the last ``accept()`` and ``close()`` is reset, and a process that the
hypervisor deschedules in that window (CPU steal) widens it to milliseconds. CI saw it.

So the last process still accepting first attaches a socket filter that drops new SYNs (a
client's kernel retries a dropped SYN after about a second, and by then the listener is
gone: the retry is refused), waits for the handshakes already under way to complete
(``SETTLE_S``, an RTT), accepts what is queued, and only then closes. The others close their
copy at once: while one process still holds the socket nothing is reset.

Which process is last: each worker holds a shared ``flock`` on one file while it accepts
(:class:`AcceptingLock`); one that stops drops it and tries an exclusive lock, which only the
last one gets. Without a lock file (one process, no supervisor) the process is the last.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import struct
import sys

LOCK_ENV = "ASRTK_LISTENER_LOCK"
# A handshake whose SYN arrived before the filter completes within one round trip: loopback
# and LAN clients take microseconds to a millisecond; a client further than this is reset.
SETTLE_S = 0.1

_SO_ATTACH_FILTER = 26  # asm-generic/socket.h
# classic BPF on the TCP header (a socket filter sees the segment from its TCP header on):
# drop a segment whose flags have SYN without ACK, pass everything else (ACKs complete the
# handshakes under way; accepted connections inherit the filter, and it passes all they get)
_DROP_SYN = (
    (0x30, 0, 0, 13),          # ldb [13]         the flags byte
    (0x54, 0, 0, 0x12),        # and #0x12        SYN | ACK
    (0x15, 0, 1, 0x02),        # jeq #0x02        SYN alone?
    (0x06, 0, 0, 0),           # ret #0           drop
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1          pass
)


def drop_new_handshakes(sock: socket.socket) -> bool:
    """Attach the SYN-dropping filter to a listener; False where the platform has no socket filters."""
    if not sys.platform.startswith("linux"):
        return False
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *insn) for insn in _DROP_SYN))
    prog = struct.pack("HL", len(_DROP_SYN), ctypes.addressof(code))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, prog)
    return True


async def take_queued(listening: list[socket.socket], last: bool) -> list[socket.socket]:
    """Every connection the kernel has completed on these non-blocking listeners, which
    nothing else accepts from any more; when ``last``, new handshakes are stopped first and
    those under way get ``SETTLE_S`` to complete, so that closing the listeners then resets none."""
    if last and [s for s in listening if drop_new_handshakes(s)]:
        await asyncio.sleep(SETTLE_S)
    queued: list[socket.socket] = []
    for sock in listening:
        with contextlib.suppress(OSError):  # BlockingIOError: the queue is empty
            while True:
                queued.append(sock.accept()[0])
    return queued


class AcceptingLock:
    """Tells a process sharing a listener whether it is the last one accepting from it."""

    def __init__(self, path: str | None) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600) if path else -1

    @classmethod
    def from_env(cls) -> AcceptingLock:
        return cls(os.environ.get(LOCK_ENV) or None)

    def accepting(self) -> None:
        if self._fd >= 0:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def stopped_last(self) -> bool:
        """Stop counting as accepting; True when no other process accepts any more (the last
        to drop its shared lock gets the exclusive one, unless one that dropped it earlier
        found all the others gone first: then that one is last)."""
        if self._fd < 0:
            return True
        import fcntl

        fcntl.flock(self._fd, fcntl.LOCK_UN)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
