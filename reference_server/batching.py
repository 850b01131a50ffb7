"""Dynamic batching: one inference thread per model, a bounded queue in front of it.

A batch closes when it holds ``max_batch`` items or when its oldest item has waited
``max_wait_s``. The oldest item always goes first (no starvation); the rest of the
batch is filled with the queued items closest to it in length, so the runner pads less.
Inference runs on the batcher's thread, never on the event loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol


class QueueFull(Exception):
    """The model's queue cannot take the items; retry later (HTTP 503 + Retry-After)."""


class DeadlineExceeded(Exception):
    """The item's deadline passed before its batch started (HTTP 504)."""


class BatchObserver(Protocol):
    def on_depth(self, model: str, depth: int) -> None: ...
    def on_batch(self, model: str, size: int, queue_waits_s: Sequence[float], infer_s: float) -> None: ...


@dataclass
class _Item:
    payload: Any
    length: int
    deadline: float | None
    enqueued_at: float
    future: Future = field(default_factory=Future)


class Batcher:
    def __init__(
        self,
        model: str,
        run_batch: Callable[[list[Any]], list[Any]],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        observer: BatchObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._observer = observer
        self._clock = clock
        self._queue: list[_Item] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.max_queue

    def start(self) -> "Batcher":
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{self.model}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def submit(
        self, payloads: Sequence[Any], *, lengths: Sequence[int] | None = None, deadline: float | None = None
    ) -> list[Future]:
        """Queue all payloads or none (:class:`QueueFull`); one Future per payload."""
        now = self._clock()
        items = [
            _Item(p, int(lengths[i]) if lengths is not None else 0, deadline, now) for i, p in enumerate(payloads)
        ]
        with self._cond:
            if self._stopping:
                raise QueueFull(f"{self.model} batcher is stopping")
            # an empty queue admits any request, so one longer than max_queue segments still runs
            if self._queue and len(self._queue) + len(items) > self.max_queue:
                raise QueueFull(
                    f"{self.model} queue holds {len(self._queue)}/{self.max_queue} items, "
                    f"cannot take {len(items)} more"
                )
            self._queue.extend(items)
            depth = len(self._queue)
            self._cond.notify_all()
        if self._observer:
            self._observer.on_depth(self.model, depth)
        return [it.future for it in items]

    def _take(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            oldest = self._queue[0].enqueued_at
            while len(self._queue) < self.max_batch and not self._stopping:
                remaining = oldest + self.max_wait_s - self._clock()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            first, rest = self._queue[0], self._queue[1:]
            rest.sort(key=lambda it: abs(it.length - first.length))
            batch = [first, *rest[: self.max_batch - 1]]
            chosen = {id(it) for it in batch}
            self._queue = [it for it in self._queue if id(it) not in chosen]
            depth = len(self._queue)
        if self._observer:
            self._observer.on_depth(self.model, depth)
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            now = self._clock()
            live: list[_Item] = []
            for it in batch:
                if not it.future.set_running_or_notify_cancel():
                    continue  # the caller gave up (cancelled) while it waited
                if it.deadline is not None and now > it.deadline:
                    it.future.set_exception(DeadlineExceeded(f"{self.model} item waited past its deadline"))
                    continue
                live.append(it)
            if not live:
                continue
            t0 = self._clock()
            try:
                results = self._run_batch([it.payload for it in live])
                if len(results) != len(live):
                    raise RuntimeError(f"{self.model} runner returned {len(results)} results for {len(live)} items")
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                for it in live:
                    it.future.set_exception(exc)
                continue
            infer_s = self._clock() - t0
            if self._observer:  # before the results: a caller that reads /metrics next sees this batch
                self._observer.on_batch(self.model, len(live), [t0 - it.enqueued_at for it in live], infer_s)
            for it, res in zip(live, results):
                it.future.set_result(res)
