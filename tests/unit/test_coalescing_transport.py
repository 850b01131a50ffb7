"""The server's CoalescingTransport: one write per turn of the event loop, nothing lost or reordered."""

from __future__ import annotations

import asyncio

from reference_server.protocols import FLUSH_AT_BYTES, CoalescingTransport


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.calls: list[str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.calls.append("close")
        self.closing = True

    def abort(self) -> None:
        self.calls.append("abort")
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append("write_eof")

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def run(body) -> FakeTransport:  # type: ignore[no-untyped-def]
    real = FakeTransport()

    async def main() -> None:
        await body(CoalescingTransport(real), real)  # type: ignore[arg-type]

    asyncio.run(main())
    return real


def test_writes_in_one_turn_leave_as_one_in_order() -> None:
    async def body(t: CoalescingTransport, real: FakeTransport) -> None:
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(memoryview(b"body"))
        t.write(b"")
        assert real.writes == [] and t.get_write_buffer_size() == 23
        await asyncio.sleep(0)
        assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        t.write(b"next")
        await asyncio.sleep(0)

    assert run(body).writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next"]


def test_close_and_write_eof_flush_first_abort_drops() -> None:
    async def body(t: CoalescingTransport, real: FakeTransport) -> None:
        t.write(b"a")
        t.write_eof()
        t.write(b"b")
        t.close()
        assert real.writes == [b"a", b"b"] and real.calls == ["write_eof", "close"]
        t.write(b"after close")  # dropped, as a closing transport drops it
        await asyncio.sleep(0)

    assert run(body).writes == [b"a", b"b"]

    async def aborted(t: CoalescingTransport, real: FakeTransport) -> None:
        t.write(b"pending")
        t.abort()
        await asyncio.sleep(0)

    real = run(aborted)
    assert real.writes == [] and real.calls == ["abort"]


def test_a_large_stream_is_flushed_without_waiting_for_the_turn() -> None:
    async def body(t: CoalescingTransport, real: FakeTransport) -> None:
        chunk = b"x" * (FLUSH_AT_BYTES // 4)
        for _ in range(4):
            t.write(chunk)
        assert real.writes == [chunk * 4]
        assert t.get_extra_info("peername") == "info:peername"  # everything else is the real transport's

    run(body)
