"""The driver's clock: what time it is, and every wait the driver does.

:class:`RealClock` is ``time.perf_counter`` plus gevent's timers; :class:`VirtualClock` is
discrete-event virtual time for tests, where a whole run completes instantly. Both are
gevent-based: a wait parks the calling greenlet, and the objects waited on are gevent's
(``Event``, ``Greenlet``, anything ``gevent.wait`` accepts). Importing this module does not
import Locust.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Any, Protocol

import gevent
import gevent.event


class Clock(Protocol):
    """Time for the driver. ``now()`` is in seconds (like ``perf_counter``: only differences mean anything)."""

    def now(self) -> float: ...

    def sleep(self, dt: float) -> None:
        """Park the calling greenlet for ``dt`` seconds."""

    def wait(self, obj: Any, timeout: float | None = None) -> bool:
        """Wait until ``obj`` (a gevent ``Event``, ``Greenlet``, ...) is ready or ``timeout``
        seconds pass; True when it is ready."""

    def pace(self, dt: float, interrupt: gevent.event.Event) -> None:
        """Sleep ``dt`` seconds as precisely as this clock can (an arrival is due then);
        return early when ``interrupt`` is set."""


PACE_SPIN_S = 0.0015


class RealClock:
    """``time.perf_counter`` and gevent: the clock of every real run."""

    now = staticmethod(time.perf_counter)  # the hot path calls it directly: no wrapper

    def sleep(self, dt: float) -> None:
        gevent.sleep(max(0.0, dt))

    def wait(self, obj: Any, timeout: float | None = None) -> bool:
        return bool(gevent.wait((obj,), timeout=timeout))

    def pace(self, dt: float, interrupt: gevent.event.Event) -> None:
        """To ~0.03 ms. The event loop's timers have 1 ms resolution (epoll_wait rounds its timeout
        up to the next millisecond, and a wake-up comes a little later still), so sleep to within
        PACE_SPIN_S, then yield to other greenlets until due. With a 1 ms margin one wake-up in ten
        overshot by 0.2-0.3 ms; 1.5 ms keeps p99 at ~0.03 ms for ~5% more CPU at 100 req/s."""
        now = time.perf_counter
        due = now() + dt
        if dt > PACE_SPIN_S:
            interrupt.wait(dt - PACE_SPIN_S)
        while now() < due and not interrupt.is_set():
            gevent.sleep(0)


class _Timer:
    __slots__ = ("due", "seq", "fired", "active")

    def __init__(self, due: float, seq: int) -> None:
        self.due = due
        self.seq = seq
        self.fired = gevent.event.Event()
        self.active = True

    def __lt__(self, other: _Timer) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class VirtualClock:
    """Discrete-event virtual time on gevent, for tests.

    ``sleep(dt)`` parks the greenlet until virtual time reaches ``now + dt``. Time moves only
    when every greenlet is blocked: a runner greenlet waits for the event loop to go idle
    (``gevent.idle()``), then jumps to the earliest wake-up and fires every timer due then.
    Greenlets that sleep concurrently (a fake transport's handler calling ``clock.sleep``
    per request) overlap as they would in real time. Waiting on something only real I/O can
    set lets virtual time run ahead meanwhile: use it with fake transports.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._runner: gevent.Greenlet | None = None

    def now(self) -> float:
        return self._now

    def _timer(self, dt: float) -> _Timer:
        t = _Timer(self._now + dt, next(self._seq))
        heapq.heappush(self._timers, t)
        if self._runner is None:
            self._runner = gevent.spawn(self._run)
        return t

    def _run(self) -> None:
        try:
            while True:
                gevent.idle()  # every other greenlet is blocked
                timers = self._timers
                while timers and not timers[0].active:
                    heapq.heappop(timers)
                if not timers:
                    return  # restarted by the next timer
                self._now = max(self._now, timers[0].due)
                while timers and timers[0].due <= self._now:
                    t = heapq.heappop(timers)
                    if t.active:
                        t.fired.set()
        finally:
            self._runner = None

    def sleep(self, dt: float) -> None:
        if dt <= 0:
            gevent.sleep(0)
            return
        t = self._timer(dt)
        try:
            t.fired.wait()
        finally:
            t.active = False

    def wait(self, obj: Any, timeout: float | None = None) -> bool:
        if timeout is None:
            return bool(gevent.wait((obj,)))
        if timeout <= 0:
            return bool(gevent.wait((obj,), timeout=0))
        t = self._timer(timeout)
        try:
            ready = gevent.wait((obj, t.fired), count=1)
        finally:
            t.active = False
        return any(r is obj for r in ready) or bool(obj.ready())

    def pace(self, dt: float, interrupt: gevent.event.Event) -> None:
        self.wait(interrupt, dt)
