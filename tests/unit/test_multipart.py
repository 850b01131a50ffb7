"""The server's multipart/form-data parser against Starlette's (python-multipart), the one it replaced."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from reference_server import multipart as mp

B = b"asrtk7d3c"
CTYPE = "multipart/form-data; boundary=" + B.decode()


def starlette_form(body: bytes, ctype: str = CTYPE, max_files: int = 4, max_fields: int = 32) -> dict[str, object]:
    """What Starlette's form parser makes of the body: {name: bytes for files, str for text} (last wins)."""
    async def stream():  # type: ignore[no-untyped-def]
        yield body

    async def run() -> dict[str, object]:
        form = await MultiPartParser(Headers({"content-type": ctype}), stream(), max_files=max_files,
                                     max_fields=max_fields).parse()
        out: dict[str, object] = {}
        for name, value in form.multi_items():
            out[name] = (await value.read(), value.filename) if isinstance(value, UploadFile) else value
        return out

    return asyncio.run(run())


def ours(body: bytes, ctype: str = CTYPE, max_files: int = 4, max_fields: int = 32) -> dict[str, object]:
    parts = mp.parse(body, ctype, max_files=max_files, max_fields=max_fields)
    return {k: (bytes(p.content), p.filename) if p.filename is not None else p.content for k, p in parts.items()}


def part(name: bytes, content: bytes, filename: bytes | None = None, extra: bytes = b"") -> bytes:
    disp = b'Content-Disposition: form-data; name="' + name + b'"' + (b'; filename="' + filename + b'"' if filename else b"")
    return b"--" + B + b"\r\n" + disp + b"\r\n" + extra + b"\r\n" + content + b"\r\n"


def body_of(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    return preamble + b"".join(parts) + b"--" + B + b"--\r\n" + epilogue


def test_what_httpx_sends_parses_as_starlette_parses_it() -> None:
    req = httpx.Request("POST", "http://x/recognize", files={"file": ("clip.wav", b"RIFF\x00\r\n--almost" * 50)},
                        data={"language": "en", "note": "caf\u00e9"})
    body = req.read()
    ctype = req.headers["content-type"]
    assert ours(body, ctype) == starlette_form(body, ctype)
    assert ours(body, ctype)["language"] == "en"


@pytest.mark.parametrize("body", [
    body_of(part(b"file", b"abc", b"a.wav"), part(b"language", b"zh")),
    body_of(part(b"file", b"", b"empty.wav")),  # an empty upload
    body_of(part(b"file", b"x", b"a.wav", extra=b"Content-Type: audio/wav\r\n")),
    body_of(part(b"file", b"one", b"1.wav"), part(b"file", b"two", b"2.wav")),  # the last of a name wins
    body_of(part(b"file", b"\r\n--" + B[:-1] + b"\r\n", b"a.wav")),  # a near-boundary inside the content
    body_of(part(b"lang", b"caf\xe9")),  # not UTF-8: Latin-1, as Starlette
    body_of(part(b"file", b"abc", b"a.wav"), epilogue=b"an epilogue"),
], ids=["file_and_field", "empty_file", "part_content_type", "last_wins", "near_boundary", "latin1", "epilogue"])
def test_same_result_as_starlette(body: bytes) -> None:
    assert ours(body) == starlette_form(body)


def test_quoted_boundary_and_charset() -> None:
    ctype = 'multipart/form-data; charset=latin-1; boundary="' + B.decode() + '"'
    body = body_of(part(b"lang", "café".encode("latin-1")))
    assert ours(body, ctype) == starlette_form(body, ctype) == {"lang": "café"}


@pytest.mark.parametrize(("body", "ctype", "reason"), [
    (body_of(part(b"file", b"x", b"a.wav")), "multipart/form-data", "Missing boundary"),
    (b"no boundary here at all", CTYPE, "does not contain the boundary"),
    (body_of(part(b"file", b"abc", b"a.wav"))[:-12], CTYPE, "cut off"),
    (b"--" + B + b"\r\nContent-Disposition: form-data\r\n\r\nx\r\n--" + B + b"--", CTYPE, '"name" must be provided'),
    (b"--" + B + b"\r\n\r\nx\r\n--" + B + b"--", CTYPE, '"name" must be provided'),  # a part without headers
    (b"--" + B + b"\r\nno colon\r\n\r\nx\r\n--" + B + b"--", CTYPE, "no colon"),
    (b"--" + B + b"junk\r\n", CTYPE, "not followed by a line break"),
    (body_of(*(part(b"f%d" % i, b"x", b"a.wav") for i in range(5))), CTYPE, "Too many files"),
    (body_of(*(part(b"t%d" % i, b"x") for i in range(33))), CTYPE, "Too many fields"),
    (body_of(part(b"t", b"x" * (mp.MAX_TEXT_PART_BYTES + 1))), CTYPE, "Part exceeded maximum size"),
    (b"--" + B + b"\r\n" + b"X-Long: " + b"a" * (mp.MAX_PART_HEADER_BYTES + 10) + b"\r\n\r\nx\r\n--" + B + b"--", CTYPE,
     "headers do not end"),
], ids=["no_boundary_param", "boundary_absent", "cut_off", "no_name", "no_headers", "no_colon", "junk_after_boundary",
        "too_many_files", "too_many_fields", "text_part_too_big", "headers_too_long"])
def test_refusals_name_the_problem_and_never_quote_the_body(body: bytes, ctype: str, reason: str) -> None:
    with pytest.raises(mp.MultipartError, match=reason) as err:
        ours(body, ctype)
    assert "\n" not in str(err.value) and "abc" not in str(err.value)


def test_a_preamble_is_skipped_as_rfc_2046_says() -> None:  # python-multipart refuses it
    body = body_of(part(b"file", b"abc", b"a.wav"), preamble=b"This is a preamble\r\n")
    assert ours(body) == {"file": (b"abc", "a.wav")}
    with pytest.raises(MultiPartException):
        starlette_form(body)


def test_transport_padding_after_a_delimiter_is_allowed() -> None:
    body = b"--" + B + b"  \t\r\n" + part(b"file", b"abc", b"a.wav")[len(B) + 4:] + b"--" + B + b"--"
    assert ours(body) == {"file": (b"abc", "a.wav")}


def test_file_content_is_a_view_of_the_body_not_a_copy() -> None:
    body = body_of(part(b"file", b"abc" * 1000, b"a.wav"))
    content = mp.parse(body, CTYPE, max_files=4, max_fields=32)["file"].content
    assert isinstance(content, memoryview) and content.obj is body


_names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e, exclude_characters='"\\%;'), min_size=1, max_size=12)
_parts = st.lists(st.tuples(_names, st.binary(max_size=300), st.booleans()), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(_parts)
def test_any_well_formed_body_parses_as_starlette_parses_it(parts: list[tuple[str, bytes, bool]]) -> None:
    """Random names, binary contents (the boundary excluded, as the sender guarantees), files and fields."""
    built = [part(n.encode(), c, b"f.bin" if is_file else None) for n, c, is_file in parts if B not in c]
    if not built:
        return
    body = body_of(*built)
    assert ours(body, max_files=10, max_fields=10) == starlette_form(body, max_files=10, max_fields=10)
