"""uvicorn's HTTP protocol with the server's error shape and a limit on the request head.

uvicorn answers a request it cannot parse with a plain-text 400 before the app sees it,
and its default (httptools) parser accepts request heads of any size (32 MiB of headers
were read into memory in a probe). :func:`protocol_class` returns a subclass that

* counts the request line and headers while they are parsed and stops at
  ``--max-header-kb`` with 431 ``headers_too_large``;
* answers every unparsable request with 400 ``invalid_request`` in the documented JSON
  shape ``{"error": {"code", "message"}}`` (and closes the connection, as uvicorn does).

The bytes of the request never reach the log: uvicorn's own warning is a constant string.
"""

from __future__ import annotations

import asyncio
import json

_MESSAGES = {
    400: ("invalid_request", "malformed HTTP request; send HTTP/1.1 with valid headers"),
    431: ("headers_too_large", "request line and headers are over --max-header-kb; send fewer or shorter headers"),
}
_PHRASES = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}


def error_bytes(status: int) -> bytes:
    code, message = _MESSAGES[status]
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, _PHRASES[status], len(body))
    )
    return head + body


def protocol_class(max_header_bytes: int) -> type[asyncio.Protocol]:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools; h11 limits heads itself
        from uvicorn.protocols.http.h11_impl import H11Protocol

        class JsonErrorsH11(H11Protocol):
            def send_400_response(self, msg: str) -> None:
                self.transport.write(error_bytes(400))
                self.transport.close()

        return JsonErrorsH11

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        """Counts what arrives before a request's head ends (httptools buffers a partial header
        field itself, so counting in its callbacks would come after the memory is spent)."""

        _head_bytes = 0
        _in_body = False
        _head_too_large = False

        def data_received(self, data: bytes) -> None:
            if not self._in_body:
                end = data.find(b"\r\n\r\n")
                self._head_bytes += len(data) if end < 0 else end
                if self._head_bytes > max_header_bytes:
                    self._head_too_large = True
                    self.send_400_response("")
                    return
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._in_body = True
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_body = False
            self._head_bytes = 0
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            if self.transport.is_closing():
                return
            self.transport.write(error_bytes(431 if self._head_too_large else 400))
            self.transport.close()

    return LimitedHttpToolsProtocol
