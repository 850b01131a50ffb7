"""multipart/form-data (RFC 7578) parsed from a whole request body held in memory.

The upload routes take one audio file and a few text fields, and the Gate has already bounded
and reserved the body (``--max-body-mb``, ``--memory-budget-mb``), so the body is read whole
and cut at its boundaries with ``bytes.find``: file contents are zero-copy ``memoryview``
slices of it. Starlette's streaming parser (python-multipart, a callback per header byte
run and a spooled temporary file per upload) cost about a third of the event loop's time per
request on the reference server. Semantics follow Starlette's form parser: the last part of
a name wins, a part with ``filename`` is a file, text fields are decoded with the body's
``charset`` (UTF-8 by default, Latin-1 when that fails), the same limits on files, fields and
text-part size; unlike it, a preamble before the first boundary is skipped (RFC 2046). What does not parse raises :class:`MultipartError` with a one-line reason
that never quotes the body.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from python_multipart.multipart import parse_options_header

MAX_PART_HEADER_BYTES = 16 * 1024
MAX_TEXT_PART_BYTES = 1024 * 1024  # Starlette's max_part_size


class MultipartError(ValueError):
    """The body is not the multipart/form-data its Content-Type announces."""


@dataclass(frozen=True)
class Part:
    content: memoryview | str  # a file's bytes (a view of the body) or a text field's value
    filename: str | None  # None: a text field


def _decode(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return raw.decode("latin-1")


def parse(body: bytes, content_type: str, *, max_files: int, max_fields: int) -> dict[str, Part]:
    """The parts of ``body`` by field name (the last of a name wins)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise MultipartError("Missing boundary in multipart.")
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "latin-1"
    delimiter, view = b"--" + boundary, memoryview(body)
    separator = b"\r\n" + delimiter
    if body.startswith(delimiter):  # the first delimiter may open the body or follow a preamble's CRLF
        pos = len(delimiter)
    else:
        at = body.find(separator)
        if at < 0:
            raise MultipartError("the body does not contain the boundary of its Content-Type")
        pos = at + len(separator)
    parts: dict[str, Part] = {}
    files = fields = 0
    while not body.startswith(b"--", pos):  # "--" after a delimiter closes the body
        eol = body.find(b"\r\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t"):  # only transport padding may follow a delimiter
            raise MultipartError("a boundary is not followed by a line break")
        head_start = eol + 2
        if body.startswith(b"\r\n", head_start):  # a part without headers
            head_end, content_start = head_start, head_start + 2
        else:
            head_end = body.find(b"\r\n\r\n", head_start, head_start + MAX_PART_HEADER_BYTES + 4)
            if head_end < 0:
                raise MultipartError(f"a part's headers do not end within {MAX_PART_HEADER_BYTES // 1024} KiB")
            content_start = head_end + 4
        disposition = b""
        for line in body[head_start:head_end].split(b"\r\n") if head_end > head_start else ():
            name, colon, value = line.partition(b":")
            if not colon:
                raise MultipartError("a part header has no colon")
            if name.strip().lower() == b"content-disposition":
                disposition = value.strip()
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise MultipartError('The Content-Disposition header field "name" must be provided.')
        content_end = body.find(separator, content_start)
        if content_end < 0:
            raise MultipartError("a part does not end with the boundary (the body is cut off)")
        name = _decode(options[b"name"], charset)
        if b"filename" in options:
            files += 1
            if files > max_files:
                raise MultipartError(f"Too many files. Maximum number of files is {max_files}.")
            parts[name] = Part(view[content_start:content_end], _decode(options[b"filename"], charset))
        else:
            fields += 1
            if fields > max_fields:
                raise MultipartError(f"Too many fields. Maximum number of fields is {max_fields}.")
            if content_end - content_start > MAX_TEXT_PART_BYTES:
                raise MultipartError(f"Part exceeded maximum size of {MAX_TEXT_PART_BYTES // 1024}KB.")
            parts[name] = Part(_decode(body[content_start:content_end], charset), None)
        pos = content_end + len(separator)
    return parts
