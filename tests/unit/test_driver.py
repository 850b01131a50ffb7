"""The load driver on a MockTransport and a VirtualClock: whole runs in virtual time.

No network and no sleeping: a handler simulates service time with ``clock.sleep`` and the
clock jumps ahead whenever every greenlet waits. Figures come from the real Recorder.
"""

from __future__ import annotations

import io
import random
import socket
import subprocess
import sys
import wave
from collections import defaultdict

import gevent
import gevent.event
import pytest
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError
from geventhttpclient.useragent import RetriesExceeded

from toolkit.engine import schedule
from toolkit.engine.clock import VirtualClock
from toolkit.engine.driver import Driver, DriverPlan, classify_exception
from toolkit.engine.requests import PreparedRequest, RequestSet
from toolkit.engine.transport import MockTransport, SendResult
from toolkit.recorder import Outcome, Recorder, merge_snapshots, summarize_s

START = 1000.0  # virtual perf_counter at the start of a test: run times are relative to t0


class _Rec(Recorder):
    """The real Recorder, keeping every outcome for the assertions."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.outcomes: list[Outcome] = []

    def record(self, o: Outcome) -> None:
        self.outcomes.append(o)
        super().record(o)


def _req(name: str = "/v1/recognize", expect_status: int = 200, output_audio: bool = False) -> PreparedRequest:
    return PreparedRequest(method="POST", path=name, headers={}, body=b"x" * 100, audio_s=None if output_audio else 2.0,
                           name=name, expect_status=expect_status, output_audio=output_audio)


def _plan(load, warmup_s: float, duration_s: float, seed: int = 7, drain_s: float = 30.0) -> DriverPlan:
    sets = [RequestSet("a", "recognize", [_req("/a"), _req("/a"), _req("/a")]),
            RequestSet("b", "recognize", [_req("/b")])]
    return DriverPlan(load=load, warmup_s=warmup_s, duration_s=duration_s, request_sets=sets, weights=[3.0, 1.0],
                      seed=seed, base_url="http://mock.invalid", drain_s=drain_s)


def _open(rate: float, horizon_s: float, **kw):
    from toolkit.scenario import LoadSpec, Stage

    return LoadSpec(mode="open", stages=(Stage(duration_s=horizon_s, rate=rate),), **kw)


def _run(plan: DriverPlan, handler, clock: VirtualClock, t0: float | None = None, during=None):
    """Run ``plan`` to the end on ``clock``; ``during(drv)`` runs in a greenlet alongside."""
    rec = _Rec(plan.warmup_s, plan.duration_s)
    intervals: list[dict] = []
    transport = MockTransport(handler)
    drv = Driver(plan, None, rec, on_intervals=intervals.extend, transport=transport, clock=clock)
    side = gevent.spawn(during, drv) if during else None
    drv.run(t0)
    if side is not None:
        side.join()
    assert transport.closed
    return drv, rec, intervals


def _lat(rec: Recorder) -> dict:
    return summarize_s(merge_snapshots([rec.snapshot()]).hist["lat"])


# -- error classes -------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "cls"), [
    (socket.timeout("timed out"), "timeout"),
    (TimeoutError(), "timeout"),
    (gevent.Timeout(), "timeout"),
    (ConnectionResetError(104, "reset"), "connection"),
    (ConnectionRefusedError(111, "refused"), "connection"),
    (socket.gaierror(-2, "Name or service not known"), "connection"),
    (OSError(113, "no route"), "connection"),
    (HTTPConnectionClosed("closed"), "connection"),  # an HTTPParseError subclass: still a connection error
    (HTTPParseError("bad status line"), "protocol"),
    (ValueError("?"), "other"),
    (None, "other"),
    # what FastHttpSession really puts in response.error with max_retries=0: the socket's
    # exception wrapped (a read timeout was counted as "other" before)
    (RetriesExceeded("http://x/work", 0, original=socket.timeout("timed out")), "timeout"),
    (RetriesExceeded("http://x/work", 0, original=ConnectionRefusedError(111, "refused")), "connection"),
])
def test_classify_exception(exc: BaseException | None, cls: str) -> None:
    assert classify_exception(exc) == cls


def _wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * int(16000 * seconds))
    return buf.getvalue()


def test_mock_transport_judges_a_response_as_the_http_target_does() -> None:
    req, created = _req(), _req(expect_status=201)
    answers = iter([200, 503, 200, (200, _wav(1.5)), ConnectionResetError(), SendResult(False, "custom", 0, 1, 2)])

    def handler(r: PreparedRequest):
        a = next(answers)
        if isinstance(a, BaseException):
            raise a
        return a

    t = MockTransport(handler)
    assert t.send(req) == SendResult(True, None, 200, 100, 0)
    assert t.send(req) == SendResult(False, "http_503", 503, 100, 0)
    assert t.send(created).error_class == "http_200"  # not the status the request expects
    tts = t.send(_req(output_audio=True))
    assert tts.ok and tts.output_audio_s == pytest.approx(1.5) and tts.bytes_received > 0
    assert t.send(req) == SendResult(False, "connection", 0, 100, 0)
    assert t.send(req).error_class == "custom"
    t.close()
    assert t.closed


@pytest.mark.parametrize(("headers", "cache"), [
    ({"X-Cache": "hit"}, "hit"), ({"x-cache": "HIT from proxy"}, "hit"), ({"X-Cache": "miss"}, "miss"),
    ({"X-Cache": "stale"}, "miss"), ({"Content-Type": "audio/wav"}, None), (None, None),
])
def test_the_x_cache_header_says_hit_or_miss(headers, cache) -> None:
    from toolkit.engine.transport import cache_status, http_result

    assert cache_status(headers) == cache
    assert http_result(_req(), 200, b"", headers=headers).cache == cache
    assert http_result(_req(), 503, b"", headers=headers).cache is None  # only successful responses count
    assert MockTransport(lambda r: (200, b"", headers or {})).send(_req()).cache == cache


def test_hits_and_misses_are_timed_apart_and_the_warmup_arrivals_counted() -> None:
    clock = VirtualClock(START)

    def handler(req: PreparedRequest):
        hit = int(clock.now() * 8) % 4 == 0  # a quarter of the arrivals (1/8 s apart) hit
        clock.sleep(0.005 if hit else 0.2)
        return (200, b"", {"X-Cache": "hit" if hit else "miss"})

    plan = _plan(_open(8, 10, arrival="uniform"), warmup_s=2, duration_s=8)
    _drv, rec, _ = _run(plan, handler, clock)
    m = merge_snapshots([rec.snapshot()])
    assert (m.scheduled_before, m.scheduled, m.ok) == (16, 64, 64)
    assert (m.cache_hits, m.cache_misses) == (16, 48)
    hit, miss = summarize_s(m.hist["hit"]), summarize_s(m.hist["miss"])
    assert hit["count"] == 16 and hit["max"] == pytest.approx(0.005, rel=0.01)
    assert miss["count"] == 48 and miss["p50"] == pytest.approx(0.2, rel=0.01)
    assert summarize_s(m.hist["lat"])["count"] == 64  # the main latency still covers every request


def test_a_catalog_set_sends_items_by_popularity() -> None:
    from toolkit.engine.catalog import Catalog
    from toolkit.scenario import RepeatSpec

    clock = VirtualClock(START)
    cat = Catalog(RepeatSpec(catalog=1000, s=1.2), build=lambda i: _req(f"/item/{i}"))
    plan = _plan(_open(50, 20, arrival="uniform"), warmup_s=0, duration_s=20)
    plan.request_sets, plan.weights = [RequestSet("c", "recognize", catalog=cat)], [1.0]
    seen: list[str] = []

    def handler(req: PreparedRequest):
        seen.append(req.path)
        return 200

    _run(plan, handler, clock)
    assert 990 <= len(seen) <= 1010
    top = sum(p == "/item/0" for p in seen) / len(seen)
    assert 0.15 < top < 0.30  # p_0 = 1 / H(1000, 1.2) = 0.22
    again: list[str] = []
    _run(plan, lambda r: again.append(r.path) or 200, VirtualClock(START))
    assert again == seen  # the same seed: the same items


def test_errors_are_recorded_by_class() -> None:
    clock = VirtualClock(START)
    outcomes = [200, 503, 429, socket.timeout(), gevent.Timeout(), ConnectionResetError(),
                HTTPConnectionClosed("closed"), HTTPParseError("bad"), ValueError("?")]
    n = [0]

    def handler(req: PreparedRequest):
        a = outcomes[n[0] % len(outcomes)]
        n[0] += 1
        clock.sleep(0.01)
        if isinstance(a, BaseException):
            raise a
        return a

    plan = _plan(_open(8, 9, arrival="uniform"), warmup_s=0, duration_s=9)  # 1/8 s apart: exact in binary
    _drv, rec, _ = _run(plan, handler, clock)
    snap = rec.snapshot()
    assert snap["total"] == n[0] == 72
    assert snap["ok"] == 8
    assert snap["by_class"] == {"http_503": 8, "http_429": 8, "timeout": 16, "connection": 16,
                                "protocol": 8, "other": 8}


# -- open loop -----------------------------------------------------------------------------


def test_open_loop_sends_exactly_the_seeded_arrivals_and_excludes_the_warmup() -> None:
    clock = VirtualClock(START)
    t0 = START + 1.0  # run() waits for its start time on the clock
    sent: list[float] = []
    paths: list[str] = []

    def handler(req: PreparedRequest) -> int:
        sent.append(clock.now() - t0)
        paths.append(req.path)
        clock.sleep(0.05)
        return 200

    plan = _plan(_open(20, 12), warmup_s=2, duration_s=10, seed=7)
    _drv, rec, intervals = _run(plan, handler, clock, t0=t0)

    expected = list(schedule.arrival_times(plan.load, plan.horizon_s, random.Random(7 * 1000 + 0)))
    assert len(expected) > 150
    assert sent == pytest.approx(expected, abs=1e-9)  # same count, each at its intended time
    measured = [t for t in expected if t >= 2.0]
    snap = rec.snapshot()
    assert snap["scheduled"] == snap["total"] == snap["ok"] == len(measured) < len(expected)
    assert snap["late_starts"] == 0
    lat = _lat(rec)
    assert lat["count"] == len(measured)
    assert lat["min"] == pytest.approx(0.05, rel=1e-3) and lat["max"] == pytest.approx(0.05, rel=1e-3)
    # the intervals (warm-up included) cover every arrival, one per second, in order
    assert sum(iv["offered"] for iv in intervals) == sum(iv["ok"] for iv in intervals) == len(expected)
    assert [iv["t"] for iv in intervals] == list(range(len(intervals)))
    # both request sets were picked, by their 3:1 weights, without disturbing the arrivals
    assert 0.6 < paths.count("/a") / len(paths) < 0.9 and "/b" in paths


PERIOD_S, STALL_S, BASE_S = 5.0, 1.0, 0.005


def _stalling(clock: VirtualClock):
    """A target that freezes STALL_S every PERIOD_S, else answers in BASE_S."""

    def handler(req: PreparedRequest) -> int:
        phase = (clock.now() - START) % PERIOD_S
        clock.sleep((STALL_S - phase if phase < STALL_S else 0.0) + BASE_S)
        return 200

    return handler


def test_open_loop_latency_from_intended_start_sees_a_stalling_target() -> None:
    """Arrivals keep coming during a freeze, so 20 % of requests wait U(0, 1] s more:
    p95 = 5 ms + 1 s * (1 - 0.05 / 0.2) = 755 ms."""
    clock = VirtualClock(START)
    plan = _plan(_open(100, 45, max_inflight=1000), warmup_s=5, duration_s=40)
    _drv, rec, _ = _run(plan, _stalling(clock), clock)
    expected_p95 = BASE_S + STALL_S * (1 - 0.05 * PERIOD_S / STALL_S)
    assert expected_p95 == pytest.approx(0.755)
    assert _lat(rec)["p95"] == pytest.approx(expected_p95, abs=0.05)
    assert rec.snapshot()["late_starts"] == 0


def test_closed_loop_measures_from_the_send_and_hides_the_stalls() -> None:
    """Same target, closed loop: users wait out each freeze, so few requests see it and the
    p95 is the 5 ms service time (coordinated omission, as Locust reports it)."""
    from toolkit.scenario import LoadSpec, Stage

    clock = VirtualClock(START)
    plan = _plan(LoadSpec(mode="closed", stages=(Stage(duration_s=45, users=4),), think_time_s=0.05),
                 warmup_s=5, duration_s=40)
    _drv, rec, _ = _run(plan, _stalling(clock), clock)
    assert _lat(rec)["p95"] == pytest.approx(BASE_S, rel=0.01)
    assert max(o.latency_s for o in rec.outcomes) > 0.5  # the freezes were there
    assert all(o.latency_s == pytest.approx(o.done_s - o.sent_s) for o in rec.outcomes)


def test_late_starts_are_counted_never_dropped_and_past_the_horizon_are_unsent() -> None:
    """max_inflight 1, 2 s per request, arrivals every 0.5 s for 5 s: each request waits for
    the previous one; once the schedule is over the rest are counted as loadgen_unsent."""
    clock = VirtualClock(START)
    sent: list[float] = []

    def handler(req: PreparedRequest) -> int:
        sent.append(clock.now() - START)
        clock.sleep(2.0)
        return 200

    plan = _plan(_open(2, 5, arrival="uniform", max_inflight=1), warmup_s=0, duration_s=5)
    drv, rec, _ = _run(plan, handler, clock)
    assert sent == pytest.approx([0.0, 2.0, 4.0, 6.0])
    ok = [o for o in rec.outcomes if o.ok]
    assert [o.intended_s for o in ok] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert [o.latency_s for o in ok] == pytest.approx([2.0, 3.5, 5.0, 6.5])  # from the intended start
    snap = rec.snapshot()
    assert snap["scheduled"] == snap["total"] == 10
    assert snap["ok"] == 4 and snap["late_starts"] == 3 + 6  # sent late, and never sent
    assert snap["by_class"] == {"loadgen_unsent": 6} and drv.unsent == 6


def test_max_inflight_bounds_concurrency() -> None:
    clock = VirtualClock(START)
    now, peak = [0], [0]

    def handler(req: PreparedRequest) -> int:
        now[0] += 1
        peak[0] = max(peak[0], now[0])
        clock.sleep(0.2)
        now[0] -= 1
        return 200

    # 50 req/s x 0.2 s = 10 wanted in flight, 3 allowed
    plan = _plan(_open(50, 10, max_inflight=3), warmup_s=0, duration_s=10)
    _drv, rec, _ = _run(plan, handler, clock)
    snap = rec.snapshot()
    assert peak[0] == 3
    assert snap["late_starts"] > 0
    assert snap["total"] == snap["scheduled"] == snap["ok"] + snap["by_class"]["loadgen_unsent"]
    assert all(o.latency_s == pytest.approx(o.done_s - o.intended_s) for o in rec.outcomes)


# -- closed loop -----------------------------------------------------------------------------


def test_closed_loop_users_follow_the_stages_with_think_time() -> None:
    from toolkit.scenario import LoadSpec, Stage

    clock = VirtualClock(START)
    by_user: dict[int, list[float]] = defaultdict(list)

    def handler(req: PreparedRequest) -> int:
        by_user[id(gevent.getcurrent())].append(clock.now() - START)
        clock.sleep(0.1)
        return 200

    load = LoadSpec(mode="closed", think_time_s=0.4, stages=(
        Stage(duration_s=10, users=8, ramp=True), Stage(duration_s=5, users=8), Stage(duration_s=5, users=3)))
    plan = _plan(load, warmup_s=0, duration_s=20)
    _drv, rec, _ = _run(plan, handler, clock)

    firsts = sorted(ts[0] for ts in by_user.values())
    assert len(firsts) == 8
    for k, first in enumerate(firsts, start=1):
        due = (k - 0.5) * 10 / 8  # round(8 t / 10) reaches k; the loop looks every 50 ms
        assert due <= first <= due + 0.05 + 1e-9
    for ts in by_user.values():  # each user: 0.1 s service + 0.4 s think, back to back
        assert [b - a for a, b in zip(ts, ts[1:])] == pytest.approx([0.5] * (len(ts) - 1))
    assert max(max(ts) for ts in by_user.values()) < 20.0
    late = [u for u, ts in by_user.items() if max(ts) >= 15.6]  # one cycle after the step down
    assert len(late) == 3
    assert all(o.latency_s == pytest.approx(0.1) for o in rec.outcomes)
    assert rec.snapshot()["ok"] == sum(len(ts) for ts in by_user.values())


# -- stop and drain --------------------------------------------------------------------------


def test_stop_ends_the_load_and_gives_inflight_requests_two_seconds() -> None:
    clock = VirtualClock(START)
    sent: list[tuple[float, float]] = []

    def handler(req: PreparedRequest) -> int:
        service = 1.0 if len(sent) % 2 == 0 else 10.0
        sent.append((clock.now() - START, service))
        clock.sleep(service)
        return 200

    def ctrl_c(drv: Driver) -> None:
        clock.sleep(3.05)
        drv.stop()

    plan = _plan(_open(10, 30, arrival="uniform"), warmup_s=0, duration_s=30)
    drv, rec, _ = _run(plan, handler, clock, during=ctrl_c)
    end = clock.now() - START
    assert end == pytest.approx(3.05 + 2.0)  # not the 30 s drain, not the 10 s requests
    assert drv.interrupted
    assert max(t for t, _ in sent) <= 3.05 and len(sent) == 31
    slow = sum(1 for _, s in sent if s == 10.0)
    snap = rec.snapshot()
    assert snap["scheduled"] == snap["total"] == 31
    assert snap["ok"] == 31 - slow and snap["by_class"] == {"unfinished": slow} and drv.unfinished == slow
    assert all(o.done_s == pytest.approx(5.05) for o in rec.outcomes if o.error_class == "unfinished")


def test_stop_while_waiting_for_a_free_slot() -> None:
    clock = VirtualClock(START)

    def handler(req: PreparedRequest) -> int:
        clock.sleep(100.0)
        return 200

    def ctrl_c(drv: Driver) -> None:
        clock.sleep(3.05)
        drv.stop()

    plan = _plan(_open(10, 30, arrival="uniform", max_inflight=1), warmup_s=0, duration_s=30)
    drv, rec, _ = _run(plan, handler, clock, during=ctrl_c)
    assert clock.now() - START == pytest.approx(5.05)
    assert rec.snapshot()["by_class"] == {"unfinished": 1}


def test_drain_kills_what_is_still_in_flight_after_drain_s() -> None:
    clock = VirtualClock(START)

    def handler(req: PreparedRequest) -> int:
        clock.sleep(60.0)
        return 200

    plan = _plan(_open(1, 3, arrival="uniform"), warmup_s=0, duration_s=3, drain_s=1.0)
    drv, rec, intervals = _run(plan, handler, clock)
    assert clock.now() - START <= plan.horizon_s + plan.drain_s + 1e-9
    assert rec.snapshot()["by_class"] == {"unfinished": 3} and drv.unfinished == 3
    assert sum(iv["errors"] for iv in intervals) == 3


# -- the seams themselves ---------------------------------------------------------------------


def test_virtual_clock_overlaps_concurrent_sleeps_and_cancels_timeouts() -> None:
    clock = VirtualClock(0.0)
    woke: list[tuple[int, float]] = []

    def sleeper(i: int) -> None:
        clock.sleep(i)
        woke.append((i, clock.now()))

    gevent.joinall([gevent.spawn(sleeper, i) for i in (3, 1, 2)])
    assert woke == [(1, 1.0), (2, 2.0), (3, 3.0)]
    ev = gevent.event.Event()
    gevent.spawn(lambda: (clock.sleep(0.5), ev.set()))
    assert clock.wait(ev, 10.0) is True and clock.now() == 3.5  # woken by the event, not the timeout
    assert clock.wait(gevent.event.Event(), 2.0) is False and clock.now() == 5.5
    clock.sleep(1.0)
    assert clock.now() == 6.5  # the cancelled 10 s timeout did not move time


def test_importing_the_driver_imports_no_locust_and_patches_nothing() -> None:
    code = ("import sys, gevent.monkey, toolkit.engine.driver; "
            "print('locust' in sys.modules, gevent.monkey.is_module_patched('socket'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- distributed mode's authentication (the wire is tested in test_distributed_security) --------

def test_cluster_secret_and_who_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from toolkit.engine import distributed as d
    from toolkit.errors import UsageError

    monkeypatch.delenv(d.SECRET_ENV, raising=False)
    assert d.cluster_secret(None) is None
    monkeypatch.setenv(d.SECRET_ENV, "s" * 16)
    assert d.cluster_secret(None) == "s" * 16 and d.cluster_secret("t" * 20) == "t" * 20
    with pytest.raises(UsageError, match="at least 16 characters"):
        d.cluster_secret("short")
    d.require_secret_for("127.0.0.1", 0, None)  # local workers only: a per-run secret is made
    d.require_secret_for("::1", 0, None)
    for bind, remote in (("0.0.0.0", 0), ("10.0.0.2", 0), ("127.0.0.1", 2)):
        with pytest.raises(UsageError, match="set a shared secret"):
            d.require_secret_for(bind, remote, None)
        d.require_secret_for(bind, remote, "s" * 16)


def test_macs_bind_the_secret_the_parts_and_their_order() -> None:
    from toolkit.engine import distributed as d

    mac = d._mac("k" * 16, "master", "worker-1", "n" * 64, '{"a": 1}')
    assert d._valid_mac("k" * 16, mac, "master", "worker-1", "n" * 64, '{"a": 1}')
    assert not d._valid_mac("K" * 16, mac, "master", "worker-1", "n" * 64, '{"a": 1}')
    assert not d._valid_mac("k" * 16, mac, "master", "worker-2", "n" * 64, '{"a": 1}')
    assert not d._valid_mac("k" * 16, mac, "worker", "master", "n" * 64, '{"a": 1}')
    assert not d._valid_mac("k" * 16, mac, "master", "worker-1", "n" * 64, '{"a": 2}')
    assert not d._valid_mac("k" * 16, None, "master") and not d._valid_mac("k" * 16, "é" * 64, "master")
