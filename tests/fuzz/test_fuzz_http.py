"""Schemathesis against a real server: every operation of reference_server/openapi.json.

Each operation is fuzzed twice: with ``Authorization: Bearer <key>`` (the server's own
behaviour on valid and invalid input) and without the key (schemathesis' generated bearer
tokens, or none: the five APIs must answer 401 and nothing else). Checks on every response:

* no status >= 500 (``not_a_server_error``; 503/504 cannot happen to sequential requests
  on an idle server with these limits, so one is a finding too);
* the status, content type, headers and body conform to the document
  (``status_code_conformance``, ``content_type_conformance``, ``response_headers_conformance``,
  ``response_schema_conformance``), invalid input is refused (``negative_data_rejection``),
  the key is enforced (``ignored_auth``), a wrong method gets 405 with ``Allow``
  (``unsupported_method``, ``allow_header_conformance``);
* every non-2xx response is JSON ``{"error": {"code", "message"}}`` with a code of
  ``app.ERRORS`` that belongs with that status (:func:`refusals_are_documented_errors`);
  /ready's 503 ``{"status": ...}`` is the one documented exception.

``positive_data_acceptance`` is off: a schema-valid multipart upload is any bytes, and
random bytes are not audio (422 is right). Audio parts are drawn from :func:`audio_files`
(real WAVs of random length, rate and channels, next to broken, empty, NaN, over-long and
oversized ones), so success bodies are validated too.

:func:`test_raw_requests` covers what schemathesis does not send (it speaks valid HTTP and
JSON): raw bytes on a socket with pathological JSON (nesting 100,000 deep, NaN, lone
surrogates, invalid UTF-8), paths with NUL bytes or thousands of characters, multipart with
odd file names and boundaries, non-ASCII and NUL bytes in the bearer token and other header
values, oversized heads, unknown routes and methods. Every request must get an HTTP
response below 500, every refusal the documented JSON error (405 with ``Allow``), and a
head over ``--max-header-kb`` 431 (or 400 when its first ``--max-header-kb`` alone are
already refused as malformed: the head arrives in pieces and the parser may reject it first).

Bounded: ``MAX_EXAMPLES`` generated cases per operation and variant plus schemathesis'
coverage cases, ``RAW_EXAMPLES`` raw requests; derandomized (the same requests every run),
no example database.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import httpx
import numpy as np
import pytest
import schemathesis
import soundfile as sf
from fuzz_support import (
    DATA_FILE, MAX_AUDIO_S, MAX_BODY_MB, MAX_HEADER_KB, FuzzServer, error_shape_problem, raw_request, reproduction, show_bytes,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, Response

from reference_server.app import OPENAPI_PATH

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

MAX_EXAMPLES = 40
RAW_EXAMPLES = 150
REQUEST_TIMEOUT_S = 30.0
DOC = json.loads(OPENAPI_PATH.read_text())
SECURED = {path for path, item in DOC["paths"].items() for op in item.values() if op.get("security", DOC["security"])}
# answered by the HTTP protocol layer before any route runs, so before the key is checked
PRE_AUTH_CODES = {"invalid_request", "headers_too_large"}

CONFIG = schemathesis.Config.from_dict({
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
    "request-timeout": REQUEST_TIMEOUT_S,
    "checks": {
        "positive_data_acceptance": {"enabled": False},
        # a refusal for size (413, 431) is a rejection of invalid input as much as a 400 is
        "negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "405", "413", "415", "422", "431"]},
    },
})
schema = schemathesis.openapi.from_path(OPENAPI_PATH, config=CONFIG)
SETTINGS = settings(
    max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=timedelta(seconds=REQUEST_TIMEOUT_S),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
REQUESTS: Counter[str] = Counter()


# -- audio parts ------------------------------------------------------------------------------


def _encode(x: np.ndarray, sr: int, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


@st.composite
def _wav(draw: st.DrawFn) -> bytes:
    sr = draw(st.sampled_from([8000, 16000, 22050, 44100]))
    seconds = draw(st.sampled_from([0.001, 0.05, 0.5, 1.0, 2.0]))
    channels = draw(st.integers(1, 2))
    subtype = draw(st.sampled_from(["PCM_16", "FLOAT"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = (0.3 * rng.standard_normal((max(1, int(seconds * sr)), channels))).clip(-1, 1).astype(np.float32)
    if subtype == "FLOAT" and draw(st.booleans()):
        x[draw(st.integers(0, x.shape[0] - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return _encode(x, sr, subtype)


_GOOD = _encode(np.zeros((8000, 1), dtype=np.float32), 16000, "PCM_16")
_OVER_LONG = _encode(np.zeros(((MAX_AUDIO_S + 1) * 8000, 1), dtype=np.float32), 8000, "PCM_16")  # 31 s, ~0.5 MB
_OVERSIZED = b"RIFF" + bytes(MAX_BODY_MB * 1024 * 1024 + 16)


def audio_files() -> st.SearchStrategy[bytes]:
    """Real WAVs most of the time; broken, empty, NaN, truncated, over-long and over-sized ones too."""
    return st.one_of(
        _wav(),
        st.binary(max_size=2048),
        st.builds(lambda cut: _GOOD[:cut], st.integers(0, len(_GOOD) - 1)),  # truncated, header only, empty
        st.sampled_from([b"", _GOOD[:44], _OVER_LONG, _OVERSIZED]),
    )


schemathesis.openapi.media_type("audio/wav", audio_files(), aliases=["audio/*", "audio/x-wav"])


# -- checks (passed to the calls that need them, not registered: registered checks run everywhere) --


def refusals_are_documented_errors(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every non-2xx response is ``{"error": {"code", "message"}}`` with a code of app.ERRORS for that status."""
    REQUESTS[f"HTTP {response.status_code} {_code(response)}".rstrip()] += 1
    if 200 <= response.status_code < 300:
        return None
    if (case.method, case.path) == ("GET", "/ready") and response.status_code == 503:
        return None  # {"status": "starting" | "draining" | "failed"}, checked against the document
    problem = error_shape_problem(response.status_code, response.content, response.headers.get("content-type", [""])[0])
    if problem:
        raise AssertionError(f"HTTP {response.status_code} is not a documented refusal: {problem}; "
                             f"body {response.content[:300]!r}")
    return None


def _code(response: Response) -> str:
    try:
        return str(json.loads(response.content)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def secured_without_key_is_unauthorized(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Without the key, the five APIs answer 401 ``unauthorized`` (or a protocol-level refusal)."""
    if case.path not in SECURED:
        return None
    if response.status_code == 401 and _code(response) == "unauthorized":
        return None
    if _code(response) in PRE_AUTH_CODES:
        return None
    raise AssertionError(f"{case.method} {case.path} without the key answered {response.status_code} "
                         f"{response.content[:200]!r}, not 401")


# -- tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    print(f"\nfuzz_http requests: {dict(sorted(REQUESTS.items()))}")


def test_the_server_serves_this_document(fuzz_server: FuzzServer) -> None:
    with httpx.Client(base_url=fuzz_server.url, timeout=10.0, trust_env=False) as client:
        r = client.get("/openapi.json")
    assert r.status_code == 200
    assert r.json() == DOC


@schema.parametrize()
@SETTINGS
def test_with_key(case: Case, fuzz_server: FuzzServer) -> None:
    REQUESTS[f"with key {case.method} {case.path}"] += 1
    case.call_and_validate(base_url=fuzz_server.url, headers=fuzz_server.auth,
                           additional_checks=[refusals_are_documented_errors])


@schema.parametrize()
@SETTINGS
def test_without_key(case: Case, fuzz_server: FuzzServer) -> None:
    """Schemathesis sends the bearer tokens it generates (random strings, often empty), or none."""
    REQUESTS[f"without key {case.method} {case.path}"] += 1
    token = (case.headers or {}).get("Authorization")
    if token is not None and len(token) % 3 == 0:
        del case.headers["Authorization"]  # a deterministic third of the cases send no header at all
    case.call_and_validate(base_url=fuzz_server.url,
                           additional_checks=[refusals_are_documented_errors, secured_without_key_is_unauthorized])


# -- raw requests -----------------------------------------------------------------------------

ROUTES = [("POST", "/recognize"), ("POST", "/api/predict/"), ("POST", "/api/v1/analyze"), ("POST", "/api/synthesize"),
          ("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics"), ("GET", "/openapi.json")]
OTHER_TARGETS = [("GET", "/nope"), ("POST", "/api/predict"), ("DELETE", "/recognize"), ("PUT", "/health"),
                 ("GET", "/ws/asr"), ("BREW", "/recognize"), ("GET", "*"), ("POST", "/recognize/../api/predict/")]
BOUNDARY = b"fuzzboundary"


def _json_str(value: str) -> bytes:
    return json.dumps(value).encode()


def _paths() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([DATA_FILE, "calls", "/etc/passwd", "../calls/a.wav", "calls/../calls/a.wav", "calls/a.wav\x00.txt",
                         "\x00", "a" * 300, "a/" * 2000, "é" * 400, "~root", "calls//a.wav", "file:///etc/passwd",
                         "%2e%2e/etc/passwd", "con", "calls/a.wav/", " "]),
        st.text(max_size=40),
        st.text(alphabet=st.sampled_from("a/.\x00é"), min_size=1, max_size=600),
    )


def _nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def _json_bodies() -> st.SearchStrategy[bytes]:
    deep = st.sampled_from([40, 1000, 100_000])
    return st.one_of(
        deep.map(_nested),
        deep.map(lambda d: b"[" * d),  # unclosed
        deep.map(lambda d: b'{"data": ' + _nested(d, b'"calls/a.wav"') + b"}"),
        deep.map(lambda d: b'{"text": "hi", "emotion": ' + b'{"a": ' * d + b"1" + b"}" * d + b"}"),
        _paths().map(lambda p: b'{"data": [' + _json_str(p) + b', "", "auto", true]}'),
        _paths().map(lambda p: b'{"data": [{"path": ' + _json_str(p) + b"}]}"),
        st.sampled_from([
            b'{"data": [1e999999]}', b'{"data": [NaN]}', b'{"data": ["data:audio/wav;base64,\\u0000"]}',
            b'{"data": ["data:;base64,' + b"A" * 5 + b'"]}', b'{"data": ["data:audio/wav,abc"]}',
            b'{"text": "\\ud800"}', b'{"text": "\\udfff\\ud800 hi"}', b'{"text": "\xff\xfe"}', b'{"text": NaN}',
            b'{"text": "hi", "emotion": Infinity}', b'{"text": "\\u0130", "emotion": "happy"}',
            b'{"text": "' + "\u0130".encode() * 400 + b'"}', b'{"text": "hi", "text": ["dup"]}', b"\xef\xbb\xbf{}",
            b"", b"null", b"[]", b"{}", b'{"data": []}', b'{"data": {}}', b'"' + b"a" * 10000 + b'"', b"1" * 5000,
        ]),
        st.binary(max_size=300),
    )


def _multipart(field: bytes, filename: bytes, content: bytes, part_headers: bytes = b"") -> bytes:
    return (b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"" + field + b"\"; filename=\"" + filename
            + b"\"\r\n" + part_headers + b"Content-Type: audio/wav\r\n\r\n" + content + b"\r\n--" + BOUNDARY + b"--\r\n")


def _multipart_bodies() -> st.SearchStrategy[bytes]:
    names = st.one_of(st.sampled_from([b"a.wav", b"", b"a\x00.wav", b"\xff\xfe.wav", "é.wav".encode(), b"a" * 5000,
                                       b"../../etc/passwd", b'a";name="audio']), st.binary(max_size=40))
    fields = st.sampled_from([b"file", b"audio", b"x", b""])
    return st.one_of(
        st.builds(_multipart, fields, names, st.one_of(st.just(_GOOD), st.binary(max_size=200))),
        st.builds(lambda f: _multipart(f, b"a.wav", _GOOD)[:-10], fields),  # no closing boundary
        st.builds(lambda n: b"".join(_multipart(b"f%d" % i, b"a.wav", b"x")[:-(len(BOUNDARY) + 6)] for i in range(n))
                  + b"--" + BOUNDARY + b"--\r\n", st.sampled_from([5, 40])),  # many parts
        st.builds(lambda h: _multipart(b"file", b"a.wav", _GOOD, h), st.sampled_from(
            [b"X: " + b"y" * 20000 + b"\r\n", b"Content-Transfer-Encoding: base64\r\n", b"\x00: \x00\r\n"])),
        st.binary(max_size=300),
    )


def _content_types() -> st.SearchStrategy[bytes | None]:
    return st.sampled_from([None, b"application/json", b"multipart/form-data; boundary=" + BOUNDARY, b"multipart/form-data",
                            b"multipart/form-data; boundary=", b"multipart/form-data; boundary=\"" + b"b" * 200 + b"\"",
                            b"text/plain", b"application/json; charset=latin-1", "é/é".encode()])


def _auth(key: str) -> st.SearchStrategy[bytes | None]:
    k = key.encode()
    return st.one_of(
        st.sampled_from([None, b"Bearer " + k, b"bearer " + k, b"Bearer  " + k + b" ", b"Bearer", b"Bearer ", b"Basic " + k,
                         b"Bearer " + k + b"\xff", "Bearer ключ".encode(), b"Bearer \xe9\xe9", b"Bearer " + k[:-1],
                         b"Bearer " + k + b"\x00", b"Bearer " + b"k" * 20000]),
        st.binary(max_size=60).map(lambda b: b"Bearer " + b),
    )


def _extra_headers() -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    name = st.one_of(st.sampled_from([b"X-Fuzz", b"Content-Length", b"Transfer-Encoding", b"Host", b"Expect", b"\xff", b""]),
                     st.binary(min_size=1, max_size=10))
    value = st.one_of(st.sampled_from([b"chunked", b"100-continue", b"-1", b"99999999999999999999", "é".encode(),
                                       b"\x00", b"a" * 40000]), st.binary(max_size=40))
    return st.lists(st.tuples(name, value), max_size=2)


@st.composite
def raw_requests(draw: st.DrawFn, key: str) -> tuple[str, str, bytes]:
    method, path = draw(st.sampled_from(ROUTES + OTHER_TARGETS))
    if draw(st.integers(0, 9)) == 0:  # an odd request target
        path = path + draw(st.sampled_from(["?x=\x00", "?" + "q" * 40000, "?%ff%fe", "#frag", "?a=é"]))
    multipart = path in ("/recognize", "/api/v1/analyze")
    body = draw(_multipart_bodies() if multipart else _json_bodies())
    ctype = draw(st.one_of(st.just(b"multipart/form-data; boundary=" + BOUNDARY if multipart else b"application/json"),
                           _content_types()))
    head = [(b"Host", b"127.0.0.1")]
    auth = draw(_auth(key))
    if auth is not None:
        head.append((b"Authorization", auth))
    if ctype is not None:
        head.append((b"Content-Type", ctype))
    head += draw(_extra_headers())
    lines = b"".join(k + b": " + v + b"\r\n" for k, v in head)
    request = (method.encode() + b" " + path.encode("utf-8", "surrogateescape") + b" HTTP/1.1\r\n" + lines
               + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    return method, path, request


def test_raw_requests(fuzz_server: FuzzServer) -> None:
    """Every distinct problem of the run is reported with its shortest reproduction, not just the first."""
    failures: dict[str, tuple[int, str]] = {}  # kind -> (request length, report)

    def refused_alone(head_start: bytes) -> bool:
        """Whether the server answers 400 to these bytes alone. The head arrives in pieces: a
        malformed header inside its first --max-header-kb is rejected (400) before the server has
        seen the limit passed (431), so for an oversized head either answer is right."""
        try:
            return raw_request(fuzz_server.url, head_start, timeout_s=REQUEST_TIMEOUT_S, then_eof=True).status == 400
        except ConnectionError:  # a well-formed start: nothing to answer yet
            return False

    def problem_with(method: str, path: str, request: bytes) -> tuple[str, str]:
        try:
            r = raw_request(fuzz_server.url, request, timeout_s=REQUEST_TIMEOUT_S)
        except ConnectionError as exc:
            return "no response", str(exc)
        REQUESTS[f"raw HTTP {r.status}"] += 1
        if r.status >= 500:
            return f"HTTP {r.status}", show_bytes(r.body)
        limit = MAX_HEADER_KB * 1024
        if request.find(b"\r\n\r\n") > limit and r.status != 431 and not (r.status == 400 and refused_alone(request[:limit])):
            return f"a head over --max-header-kb {MAX_HEADER_KB} answered {r.status}, not 431", show_bytes(r.body)
        if 200 <= r.status < 300 or ((method, path) == ("GET", "/ready") and r.status == 503):
            return "", ""
        problem = error_shape_problem(r.status, r.body, r.headers.get("content-type", ""))
        if problem:
            return f"HTTP {r.status}: {problem}", show_bytes(r.body)
        if r.status == 405 and not r.headers.get("allow"):
            return "405 without Allow", show_bytes(r.body)
        return "", ""

    @given(raw_requests(fuzz_server.key))
    @settings(SETTINGS, max_examples=RAW_EXAMPLES, phases=[Phase.explicit, Phase.generate])
    def one(req: tuple[str, str, bytes]) -> None:
        method, path, request = req
        REQUESTS["raw"] += 1
        kind, answer = problem_with(method, path, request)
        if not kind:
            return
        if kind.startswith(("HTTP 5", "no response")):  # a crash: one per route, they may differ
            kind += f" on {path if (method, path) in ROUTES else 'another target'}"
        if kind not in failures or len(request) < failures[kind][0]:
            repro = reproduction(fuzz_server.url, request)
            failures[kind] = (len(request), f"answer {answer}\nto {method} {path[:80]!r}:\n{repro}")

    one()
    assert not failures, f"{len(failures)} distinct problem(s):\n\n" + "\n\n".join(f"{k}: {v}" for k, (_, v) in failures.items())
