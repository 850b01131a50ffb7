"""The logging policy: no request body, audio, header value or key reaches a log, at any level.

One filter on the server's only handler enforces it for every logger, ours and the
libraries' (uvicorn, websockets, python-multipart, starlette):

* **Libraries**: below WARNING nothing passes (at debug, websockets logs every frame and the
  handshake headers, ``Authorization`` included). At WARNING and above the message template
  is kept and its arguments are withheld, numbers included: a library may interpolate a
  header, a file name or a piece of the body (python-multipart logs the body's bytes as
  numbers: "Expected boundary character 48, got 120 at index 4").
* **Tracebacks** (any logger): the exception chain keeps its types and frames (file, line,
  function) but not its messages: ``OSError(filename=<the upload>)`` or a ``ValueError``
  quoting a JSON fragment would otherwise put request data into the log.
* **Our own loggers** (``reference_server``, ``toolkit``) are written never to interpolate
  request data; their records pass as they are, tracebacks sanitised as above.

A test (tests/fuzz/test_log_policy.py) sends a marker in every place a client controls, at
``--log-level debug``, and greps the log for it and for the API key.
"""

from __future__ import annotations

import logging
import traceback
from types import TracebackType

OWN_LOGGERS = ("reference_server", "toolkit", "asrtk")
WITHHELD = "<withheld>"


def sanitized_traceback(exc: BaseException | None, tb: TracebackType | None = None) -> str:
    """Types and frames of an exception chain, without any exception message."""
    lines: list[str] = []
    seen: set[int] = set()
    chain: list[tuple[BaseException, TracebackType | None]] = []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append((exc, tb if not chain else exc.__traceback__))
        exc = exc.__cause__ or exc.__context__
    for i, (e, t) in enumerate(reversed(chain)):
        if i:
            lines.append("The above exception led to:")
        lines.append("Traceback (most recent call last):")
        for fr in traceback.extract_tb(t or e.__traceback__):
            lines.append(f'  File "{fr.filename}", line {fr.lineno}, in {fr.name}')
        lines.append(f"{type(e).__module__}.{type(e).__qualname__}: (message withheld: it may carry request data)")
    return "\n".join(lines)


class LogPolicy(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".", 1)[0] in OWN_LOGGERS
        if not own:
            if record.levelno < logging.WARNING:
                return False
            if record.args:
                record.msg = f"{record.msg} [{WITHHELD} arguments]"
                record.args = ()
            elif not isinstance(record.msg, str):
                record.msg = f"{type(record.msg).__name__} {WITHHELD}"
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = sanitized_traceback(record.exc_info[1], record.exc_info[2])
            record.exc_info = None
        elif record.exc_text and not own:
            record.exc_text = f"(traceback {WITHHELD})"
        return True
