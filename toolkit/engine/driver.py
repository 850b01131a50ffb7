"""The gevent load driver: open-loop arrivals, closed-loop users, streaming sessions.

Every request's latency is measured from its *intended* start (open loop), so a stalled
target cannot hide behind a waiting client (no coordinated omission). Arrivals are never
dropped: when ``max_inflight`` requests are pending the scheduler waits for a slot and
the lag (late start) is recorded.

Two seams: the driver sends through a :class:`~toolkit.engine.transport.Transport`
(default :func:`~toolkit.engine.transport.http_target`: the lean RawHttpTarget for http://,
Locust's FastHttpSession for https://) and
waits only through a :class:`~toolkit.engine.clock.Clock` (default real time), so a test
runs a whole schedule instantly with a ``MockTransport`` and a ``VirtualClock``.
Importing this module does not import Locust (gevent, yes: importing it patches nothing);
building the default ``HttpTarget`` or :func:`new_environment` does, so a real run
imports ``locust`` first thing, before anything else opens a socket or starts a thread.
Streaming sessions talk WebSocket directly, not through the transport.
"""

from __future__ import annotations

import gc
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.pool

from toolkit.engine import schedule
from toolkit.engine.clock import Clock, RealClock
from toolkit.engine.requests import PreparedRequest, RequestSet
from toolkit.engine.transport import (NULL_REQUEST_EVENT, HttpTarget, SendResult, Transport,
                                      classify_exception, http_target)
from toolkit.recorder import Outcome, Recorder

if TYPE_CHECKING:
    from locust.env import Environment

GIL_SWITCH_S = 0.0002

__all__ = ["Driver", "DriverPlan", "HttpTarget", "SendResult", "classify_exception", "new_environment"]


@dataclass
class DriverPlan:
    """What one load-generating process does. ``share``/``part`` split the load of a
    distributed run: this process offers ``share`` of the rate, or its part of the users."""

    load: Any  # scenario.LoadSpec
    warmup_s: float
    duration_s: float
    request_sets: Sequence[RequestSet]
    weights: Sequence[float]
    seed: int
    base_url: str
    timeout_s: float = 60.0
    drain_s: float = 30.0
    share: float = 1.0
    part: int = 0
    parts: int = 1

    @property
    def horizon_s(self) -> float:
        return self.warmup_s + self.duration_s


def _ws_url(base_url: str, path: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://"):].rstrip("/") + path
    return "ws://" + base_url.split("://", 1)[-1].rstrip("/") + path


class Driver:
    """Runs one :class:`DriverPlan` in this process and feeds a :class:`Recorder`.

    ``env`` is the Locust environment whose ``request`` event sees every request (None: no
    event). ``transport`` defaults to :class:`HttpTarget`, ``clock`` to :class:`RealClock`;
    :meth:`run`'s ``t0`` is on that clock. The driver closes its transport at the end of the run.
    """

    def __init__(self, plan: DriverPlan, env: Environment | None, recorder: Recorder,
                 on_intervals: Callable[[list[dict]], None] | None = None, *,
                 transport: Transport | None = None, clock: Clock | None = None) -> None:
        self.plan = plan
        self.env = env
        self.rec = recorder
        self.on_intervals = on_intervals
        self.max_inflight = int(plan.load.max_inflight)
        self._inflight = 0
        self._clock: Clock = clock if clock is not None else RealClock()
        self._now = self._clock.now
        self._request_event = env.events.request if env is not None else NULL_REQUEST_EVENT
        if transport is None:
            users = max((int(st.users or 0) for st in plan.load.stages), default=0)
            transport = http_target(env, plan.base_url, max(self.max_inflight, users), plan.timeout_s)
        self.target: Transport = transport
        # arrivals and request picks draw from separate streams, so the schedule depends on
        # the seed alone (not on how many requests a set holds)
        self.rng = random.Random(plan.seed * 1000 + plan.part)
        self._pick_rng = random.Random(f"asrtk-pick/{plan.seed}/{plan.part}")
        self.pool = gevent.pool.Pool(self.max_inflight if plan.load.mode == "open" else None)
        self.stopping = gevent.event.Event()
        self.t0 = 0.0
        self.interrupted = False
        self._stop_at: float | None = None
        self._main: gevent.Greenlet | None = None
        self.unfinished = 0
        self.unsent = 0
        self._cum_weights: list[float] = []
        acc = 0.0
        for w in plan.weights:
            acc += float(w)
            self._cum_weights.append(acc)

    # -- clock ------------------------------------------------------------------------
    def clock(self) -> float:
        """Seconds since the run's ``t0``."""
        return self._now() - self.t0

    def _sleep(self, dt: float) -> None:
        self._clock.wait(self.stopping, max(0.0, dt))

    def _pace_sleep(self, dt: float) -> None:
        """Sleep until an arrival is due, as precisely as the clock can (real: ~0.1 ms)."""
        self._clock.pace(dt, self.stopping)

    @property
    def inflight(self) -> int:
        return self._inflight

    # -- request picking ----------------------------------------------------------------
    def _pick(self) -> PreparedRequest:
        sets = self.plan.request_sets
        i = 0
        if len(sets) > 1:
            x = self._pick_rng.random() * self._cum_weights[-1]
            while i < len(sets) - 1 and x >= self._cum_weights[i]:
                i += 1
        return sets[i].pick(self._pick_rng)

    # -- one request ----------------------------------------------------------------------
    def _one(self, req: PreparedRequest, intended: float, closed: bool) -> None:
        sent = self.clock()
        self._inflight += 1
        try:
            if req.pcm is not None:
                self._stream(req, intended, sent)
                return
            res = self.target.send(req)
            done = self.clock()
            latency = done - (sent if closed else intended)
            audio_s = req.audio_s if req.audio_s else res.output_audio_s
            self.rec.record(Outcome(
                intended_s=intended, sent_s=sent, done_s=done, latency_s=latency, ok=res.ok,
                error_class=res.error_class, audio_s=audio_s if res.ok else None,
                bytes_sent=res.bytes_sent, bytes_received=res.bytes_received, cache=res.cache,
                retry_after=res.retry_after))
        except gevent.GreenletExit:
            self.unfinished += 1
            now = self.clock()
            self.rec.record(Outcome(intended_s=intended, sent_s=sent, done_s=now, latency_s=now - intended,
                                    ok=False, error_class="unfinished"))
            raise
        finally:
            self._inflight -= 1

    def _stream(self, req: PreparedRequest, intended: float, connect_at: float) -> None:
        import websocket

        chunk_s = req.chunk_bytes / 32000.0
        connected = connect_at
        n = max(1, -(-len(req.pcm or b"") // req.chunk_bytes))
        start = max(intended, connect_at) if not req.realtime else intended
        intended_sends: list[float] = []
        actual_sends: list[float] = []
        partial_at: list[float] = []
        final_at: list[float] = []
        errors: list[str] = []
        bytes_rx = 0
        headers = [f"{k}: {v}" for k, v in req.headers.items()]
        url = _ws_url(self.plan.base_url, req.path)
        ws = None
        t_begin = time.time()
        try:
            # a real-time bound: the session's network I/O is real whatever the clock
            with gevent.Timeout(self.plan.timeout_s + (req.audio_s or 0.0)):
                ws = websocket.create_connection(url, timeout=self.plan.timeout_s, header=headers,
                                                 enable_multithread=True)
                connected = self.clock()
                done = gevent.event.Event()

                def reader() -> None:
                    nonlocal bytes_rx
                    try:
                        while True:
                            msg = ws.recv()
                            t = self.clock()
                            if not msg:
                                errors.append("connection")
                                return
                            bytes_rx += len(msg)
                            try:
                                data = json.loads(msg)
                            except (TypeError, ValueError):
                                continue
                            typ = data.get("type") if isinstance(data, dict) else None
                            if typ == "partial":
                                partial_at.append(t)
                            elif typ == "final":
                                final_at.append(t)
                                return
                            elif typ == "error":
                                errors.append("ws_error")
                                return
                    except websocket.WebSocketTimeoutException:
                        errors.append("timeout")
                    except (websocket.WebSocketException, OSError):
                        errors.append("connection")
                    finally:
                        done.set()

                g = gevent.spawn(reader)
                pcm = req.pcm or b""
                for k in range(n):
                    due = start + (k + 1) * chunk_s if req.realtime else self.clock()
                    now = self.clock()
                    if due > now:
                        self._clock.sleep(due - now)
                    if errors:
                        break
                    ws.send_binary(pcm[k * req.chunk_bytes:(k + 1) * req.chunk_bytes])
                    intended_sends.append(due)
                    actual_sends.append(self.clock())
                end_due = intended_sends[-1] if intended_sends else self.clock()
                if not errors:
                    ws.send(json.dumps({"type": "end"}))
                done.wait()
                self._clock.wait(g, 1.0)
        except gevent.Timeout:
            errors.append("timeout")
            end_due = intended_sends[-1] if intended_sends else intended
        except websocket.WebSocketBadStatusException as exc:
            errors.append(f"http_{exc.status_code}")
            end_due = intended
        except (websocket.WebSocketException, OSError) as exc:
            errors.append(classify_exception(exc) if not isinstance(exc, websocket.WebSocketException)
                          else "connection")
            end_due = intended
        finally:
            if ws is not None:
                try:
                    ws.close(timeout=1.0)
                except Exception:  # noqa: BLE001 - closing a dead socket must not mask the result
                    pass
        done_t = self.clock()
        ok = not errors and bool(final_at)
        if not errors and not final_at:
            errors.append("connection")
        partials = [max(0.0, partial_at[k] - intended_sends[k]) for k in range(min(len(partial_at), len(intended_sends)))]
        final_latency = (final_at[0] - end_due) if final_at else None
        sent_bytes = sum(min(req.chunk_bytes, len(req.pcm or b"") - k * req.chunk_bytes) for k in range(len(actual_sends)))
        # the load generator's own lateness: audio due while the target was still accepting the
        # connection is sent at once, and that wait is the target's (it shows in partial latency)
        lags = [max(0.0, a - max(i, connected)) for a, i in zip(actual_sends, intended_sends)]
        self._request_event.fire(
            request_type="WS", name=req.name, response_time=(time.time() - t_begin) * 1000.0,
            response_length=bytes_rx, exception=None if ok else RuntimeError(errors[0]),
            context={}, url=url, start_time=t_begin, response=None)
        self.rec.record(Outcome(
            intended_s=intended, sent_s=connect_at, done_s=done_t,
            latency_s=max(0.0, final_latency) if final_latency is not None else done_t - intended,
            ok=ok, error_class=None if ok else errors[0], audio_s=None,
            bytes_sent=sent_bytes, bytes_received=bytes_rx,
            partial_latencies_s=partials,
            final_latency_s=max(0.0, final_latency) if final_latency is not None else None,
            chunk_lags_s=lags))

    # -- loops -------------------------------------------------------------------------------
    def _open_loop(self) -> None:
        times = schedule.arrival_times(self.plan.load, self.plan.horizon_s, self.rng, self.plan.share)
        for intended, _lag in schedule.pace(times, self.clock, self._pace_sleep):
            if self.stopping.is_set():
                return
            self.rec.note_scheduled(intended)
            now = self.clock()
            if now >= self.plan.horizon_s:
                # The schedule is over and this arrival was never sent: the load generator fell
                # behind. Count it (and the rest) instead of sending a backlog after the run.
                self.unsent += 1
                self.rec.record(Outcome(intended_s=intended, sent_s=now, done_s=now, latency_s=now - intended,
                                        ok=False, error_class="loadgen_unsent"))
                continue
            # Blocks while max_inflight requests are pending; the wait shows as this arrival's
            # lag. stop() kills this greenlet, which ends such a wait.
            self.pool.spawn(self._one, self._pick(), intended, False)

    def _user(self, slot: int, active: list[bool]) -> None:
        think = float(self.plan.load.think_time_s)
        while active[slot] and not self.stopping.is_set():
            intended = self.clock()
            if intended >= self.plan.horizon_s:
                return
            self.rec.note_scheduled(intended)
            self._one(self._pick(), intended, True)
            if think > 0 and active[slot]:
                self._sleep(think)

    def _closed_loop(self) -> None:
        active: list[bool] = []
        try:
            while not self.stopping.is_set():
                now = self.clock()
                if now >= self.plan.horizon_s:
                    break
                want = schedule.split_users(schedule.users_at(self.plan.load, now), self.plan.parts, self.plan.part)
                running = sum(active)
                if want > running:
                    for _ in range(want - running):
                        active.append(True)
                        self.pool.spawn(self._user, len(active) - 1, active)
                elif want < running:
                    for i in reversed(range(len(active))):
                        if running <= want:
                            break
                        if active[i]:
                            active[i] = False
                            running -= 1
                self._sleep(0.05)
        finally:
            for i in range(len(active)):
                active[i] = False

    def _ticker(self) -> None:
        while True:
            self.rec.inflight = self.inflight
            closed = self.rec.advance(self.clock())
            if closed and self.on_intervals:
                self.on_intervals(closed)
            self._clock.sleep(0.2)

    def _drain(self) -> None:
        """Wait for in-flight requests (``drain_s`` at most, 2 s after :meth:`stop`), then
        kill the rest: they are recorded as ``unfinished``."""
        now = self._now
        deadline = now() + self.plan.drain_s
        joiner = gevent.spawn(self.pool.join)
        try:
            while not joiner.ready():
                if self._stop_at is not None:
                    deadline = min(deadline, self._stop_at + 2.0)
                left = deadline - now()
                if left <= 0:
                    break
                self._clock.wait(joiner, min(0.1, left))
            self.pool.kill(block=False)
            self._clock.wait(joiner, 1.0)
        finally:
            joiner.kill()

    def stop(self) -> None:
        """Stop offering load now (Ctrl-C): in-flight requests get at most 2 s."""
        self.interrupted = True
        if self._stop_at is None:
            self._stop_at = self._now()
        self.stopping.set()
        main = self._main
        if main is not None and main is not gevent.getcurrent():
            main.kill(block=False)  # it may be waiting for a free slot

    def run(self, t0: float | None = None) -> None:
        """Offer the load from ``t0`` (a value of the driver's clock, ``perf_counter`` by
        default; now when None) to the end of the schedule, drain in-flight requests, close
        every interval."""
        # Prepared bodies and Locust's machinery are long-lived: move them out of the
        # collector's reach so a full collection cannot stall the schedule for milliseconds.
        gc.collect()
        gc.freeze()
        # A native thread (the samplers' work, a DNS lookup) holds the GIL for up to the switch
        # interval before this loop gets it back: 5 ms by default, which would show in the
        # latency of every request in flight meanwhile. 0.2 ms bounds that.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, GIL_SWITCH_S))
        self.t0 = self._now() if t0 is None else t0
        wait = self.t0 - self._now()
        if wait > 0:
            self._clock.wait(self.stopping, wait)
        ticker = gevent.spawn(self._ticker)
        try:
            loop = self._open_loop if self.plan.load.mode == "open" else self._closed_loop
            self._main = main = gevent.spawn(loop)
            main.join()
            if main.exception is not None:
                raise main.exception
            self._drain()
        finally:
            gc.unfreeze()
            sys.setswitchinterval(switch)
            self.target.close()
            ticker.kill()
            self.rec.inflight = 0
            closed = self.rec.flush()
            if closed and self.on_intervals:
                self.on_intervals(closed)


def new_environment() -> Environment:
    """A Locust environment for firing ``request`` events (stats stay usable, unreported).
    Imports Locust (which monkey-patches the process)."""
    from locust.env import Environment

    return Environment(events=None)
