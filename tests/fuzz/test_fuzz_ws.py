"""Hypothesis against WS /ws/asr of a real server: random sequences of binary and text frames.

Binary frames: random bytes of odd and even lengths, empty ones, random PCM16, in one
sequence of eight a chunk over --max-audio-s. Text frames: random JSON, ``{"type": "end"}`` and near misses,
nesting 100,000 deep, random strings, NUL, 100 kB strings. After each frame the server
must answer with exactly one text frame that is JSON and one of the messages documented in
openapi.json (``WsPartial``, ``WsFinal``, ``WsError``), or close the connection with a close
frame and a documented code: 1000 right after ``final``, 1009 right after
``audio_too_long``, else 1008, 1013 or 1001. A bad message must leave the socket working:
each sequence that did not end the stream ends with ``{"type": "end"}``, which must get
``final`` and close 1000. Sequence numbers count the accepted chunks.

Without the key (none, wrong, non-ASCII), the handshake is refused with HTTP 403 (close
1008 before accept): never a 5xx, never a session.

Bounded: ``MAX_EXAMPLES`` sequences of at most ``MAX_FRAMES`` frames, ``RECV_TIMEOUT_S`` per
answer; derandomized, no example database.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import jsonschema
import numpy as np
import pytest
from fuzz_support import MAX_AUDIO_S, FuzzServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from reference_server.app import OPENAPI_PATH

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

MAX_EXAMPLES = 50
MAX_FRAMES = 10
RECV_TIMEOUT_S = 10.0
CLOSE_CODES = {1000, 1001, 1008, 1009, 1013}
SETTINGS = settings(
    max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=timedelta(seconds=120),
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure that times out would cost RECV_TIMEOUT_S per try
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
FRAMES: Counter[str] = Counter()

_doc = json.loads(OPENAPI_PATH.read_text())
MESSAGE = jsonschema.Draft202012Validator({"$ref": "#/components/schemas/WsServerMessage", "components": _doc["components"]})

END = json.dumps({"type": "end"})
_OVER_LONG = np.zeros(int((MAX_AUDIO_S + 1) * 16000), dtype="<i2").tobytes()


def _pcm(samples: int, seed: int) -> bytes:
    return (np.random.default_rng(seed).standard_normal(samples) * 3000).clip(-32768, 32767).astype("<i2").tobytes()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

binary_frames = st.one_of(
    st.binary(max_size=65),  # odd and even lengths, empty
    st.builds(_pcm, st.sampled_from([1, 160, 1600, 8000]), st.integers(0, 2**16)),
    st.just(b""),
)
text_frames = st.one_of(
    st.just(END),
    st.sampled_from([
        '{"type": "END"}', '{"type": "end", "extra": [1, 2]}', '{"type": ["end"]}', '{"type": "partial"}', '"end"',
        '{"type": "end"', "[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000,
        "", "\x00", "NaN", '{"type": NaN}', "a" * 100_000, "\ud7ff\ue000", '{"type": "end"}\x00',
    ]),
    _json.map(json.dumps),
    st.text(max_size=50),
)
frames = st.lists(st.one_of(binary_frames, binary_frames, text_frames), max_size=MAX_FRAMES)


def _is_end(frame: bytes | str) -> bool:
    """What the server must take for the end of the stream: a JSON object whose type is "end"."""
    if not isinstance(frame, str):
        return False
    try:
        obj = json.loads(frame)
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("type") == "end"


def _connect(url: str, headers: dict[str, str] | None) -> ClientConnection:
    return connect(url, additional_headers=headers, proxy=None, compression=None, open_timeout=RECV_TIMEOUT_S,
                   close_timeout=5.0, max_size=2**22)


class Stream:
    """One session: sends frames, reads each answer, and checks the protocol as it goes."""

    def __init__(self, ws: ClientConnection, sent: list[str]) -> None:
        self.ws = ws
        self.sent = sent  # what was sent so far, for the failure message
        self.seq = 0
        self.closed: int | None = None

    def fail(self, why: str) -> AssertionError:
        return AssertionError(f"{why}\nframes sent: {self.sent}")

    def closed_now(self, exc: ConnectionClosed, expected: set[int]) -> None:
        if exc.rcvd is None:
            raise self.fail(f"the server dropped the connection without a close frame ({exc})") from None
        FRAMES[f"close {exc.rcvd.code}"] += 1
        if exc.rcvd.code not in expected:
            raise self.fail(f"closed with {exc.rcvd.code} {exc.rcvd.reason!r}, expected one of {sorted(expected)}") from None
        self.closed = exc.rcvd.code

    def answer(self) -> dict[str, Any] | None:
        """The one answer to the frame just sent; None if the server closed instead (checked)."""
        try:
            raw = self.ws.recv(timeout=RECV_TIMEOUT_S)
        except TimeoutError:
            raise self.fail(f"no answer within {RECV_TIMEOUT_S:g} s") from None
        except ConnectionClosed as exc:
            self.closed_now(exc, CLOSE_CODES - {1000, 1009})  # 1000 and 1009 come only after their message
            return None
        if not isinstance(raw, str):
            raise self.fail(f"the server sent a binary frame: {raw[:60]!r}")
        try:
            msg = json.loads(raw)
        except ValueError:
            raise self.fail(f"the server sent a text frame that is not JSON: {raw[:200]!r}") from None
        errors = sorted(MESSAGE.iter_errors(msg), key=str)
        if errors:
            raise self.fail(f"undocumented message {raw[:300]!r}: {errors[0].message[:300]}")
        FRAMES[msg["type"] if msg["type"] != "error" else f"error {msg['error']['code']}"] += 1
        return msg

    def expect_close(self, code: int, after: str) -> None:
        try:
            extra = self.ws.recv(timeout=RECV_TIMEOUT_S)
        except TimeoutError:
            raise self.fail(f"no close {code} within {RECV_TIMEOUT_S:g} s after {after}") from None
        except ConnectionClosed as exc:
            self.closed_now(exc, {code})
            return
        raise self.fail(f"after {after} the server sent {str(extra)[:200]!r} instead of closing with {code}")

    def send(self, frame: bytes | str) -> None:
        self.sent.append(f"{'bytes' if isinstance(frame, bytes) else 'text'}[{len(frame)}] {frame[:40]!r}")
        try:
            self.ws.send(frame)
        except ConnectionClosed as exc:
            self.closed_now(exc, CLOSE_CODES - {1000, 1009})
            return
        msg = self.answer()
        if msg is None:
            return
        kind = msg["type"]
        if kind == "partial":
            if not isinstance(frame, bytes):
                raise self.fail(f"a partial answered a text frame: {msg}")
            self.seq += 1
            if msg["seq"] != self.seq:
                raise self.fail(f"partial seq {msg['seq']}, expected {self.seq}")
        elif kind == "final":
            if not _is_end(frame):
                raise self.fail(f"a final answered {frame[:60]!r}")
            if msg["seq"] != self.seq + 1:
                raise self.fail(f"final seq {msg['seq']}, expected {self.seq + 1}")
            self.expect_close(1000, "final")
        elif msg["error"]["code"] == "audio_too_long":
            self.expect_close(1009, "audio_too_long")
        elif msg["error"]["code"] in ("stream_idle", "stream_too_long"):
            self.expect_close(1008, msg["error"]["code"])
        elif msg["error"]["code"] == "draining":
            self.expect_close(1001, "draining")


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    print(f"\nfuzz_ws frames: {dict(sorted(FRAMES.items()))}")


def test_random_frame_sequences(fuzz_server: FuzzServer) -> None:
    @given(frames, st.integers(0, 7).map(lambda n: n == 0))
    @SETTINGS
    def one(sequence: list[bytes | str], over_long: bool) -> None:
        FRAMES["sessions"] += 1
        if over_long:  # now and then a chunk over --max-audio-s, somewhere in the sequence
            sequence = [*sequence[: len(sequence) // 2], _OVER_LONG, *sequence[len(sequence) // 2:]]
        with _connect(fuzz_server.ws_url, fuzz_server.auth) as ws:
            stream = Stream(ws, [])
            for frame in sequence:
                FRAMES["sent"] += 1
                stream.send(frame)
                if stream.closed is not None:
                    return
            stream.send(END)  # whatever came before, the socket still works
            if stream.closed != 1000:
                raise stream.fail(f"{{'type': 'end'}} after the sequence did not end the stream (close {stream.closed})")

    one()


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Bearer", "Basic x", "Bearer \u00e9\u00e9", "bearer  "])
def test_handshake_without_the_key_is_refused(fuzz_server: FuzzServer, authorization: str | None) -> None:
    headers = None if authorization is None else {"Authorization": authorization}
    with pytest.raises(InvalidStatus) as refused:
        with _connect(fuzz_server.ws_url, headers) as ws:
            ws.send(END)
            pytest.fail(f"a session opened without the key, answering {ws.recv(timeout=RECV_TIMEOUT_S)!r}")
    assert refused.value.response.status_code == 403
