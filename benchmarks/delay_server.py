"""A delay-logging HTTP server for the measurement-error benchmark (benchmarks/loadgen.py).

asyncio on uvloop, requests parsed by httptools: a lean server, so that what a client
measures above the injected delay is mostly the client's own error. Each POST waits a
lognormal delay (``--median-ms``, ``--sigma``, seeded), then answers 200. It logs, per
request, the time from the request's last byte parsed to its response handed to the socket
(``perf_counter``; the timer's own inexactness is in it): the truth a client's latency is
compared with. ``GET /truth`` returns
those times (seconds, in completion order); ``GET /reset`` clears them.

Run: ``python benchmarks/delay_server.py --port 0`` (prints ``listening on http://...``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time

import httptools

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class State:
    def __init__(self, median_s: float, sigma: float, seed: int) -> None:
        self.median_s, self.sigma = median_s, sigma
        self.rng = random.Random(seed)
        self.truth: list[float] = []

    def delay(self) -> float:
        return self.median_s * math.exp(self.sigma * self.rng.gauss(0.0, 1.0))


class Protocol(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.method = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        t = self.transport
        assert t is not None
        method = self.parser.get_method()
        if method == b"GET":
            if self.url == b"/truth":
                body = json.dumps(self.state.truth).encode()
            elif self.url == b"/reset":
                self.state.truth.clear()
                body = b"[]"
            else:
                body = b"ok"
            t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            return
        start = time.perf_counter()

        def answer() -> None:
            # the truth is what the server really took (the loop's timers are not exact)
            t.write(OK)
            self.state.truth.append(time.perf_counter() - start)

        asyncio.get_running_loop().call_later(self.state.delay(), answer)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--median-ms", type=float, default=20.0)
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio still works, a little slower
        pass
    state = State(a.median_ms / 1000.0, a.sigma, a.seed)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: Protocol(state), "127.0.0.1", a.port, backlog=1024)
        port = srv.sockets[0].getsockname()[1]
        print(f"listening on http://127.0.0.1:{port}", flush=True)
        await srv.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
