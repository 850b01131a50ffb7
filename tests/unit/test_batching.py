"""The dynamic batcher with a fake runner: batch closing, grouping, bounds, deadlines, errors.

No sleeps decide outcomes: the fake runner blocks on an Event the test controls, and
the clock is injected where time matters.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, wait

import pytest

from reference_server.batching import Batcher, DeadlineExceeded, QueueFull

TIMEOUT = 10.0


class GatedRunner:
    """Records each batch; the first call blocks until ``release`` is set."""

    def __init__(self, block_first: bool = True) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self._first = block_first

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.entered.set()
        if self._first:
            self._first = False
            assert self.release.wait(TIMEOUT)
        return [i * 10 for i in items]


class Recorder:
    def __init__(self) -> None:
        self.depths: list[int] = []
        self.batches: list[tuple[int, int]] = []

    def on_depth(self, model: str, depth: int) -> None:
        self.depths.append(depth)

    def on_batch(self, model: str, size: int, queue_waits_s: Sequence[float], infer_s: float) -> None:
        self.batches.append((size, len(queue_waits_s)))


def _results(futures: list[Future]) -> list[int]:
    done, pending = wait(futures, timeout=TIMEOUT)
    assert not pending
    return [f.result() for f in futures]


def _blocked(runner: GatedRunner, batcher: Batcher, n: int = 1) -> Future:
    """Occupy the runner with a batch of ``n`` items (item 0 first) so later submissions queue up."""
    f = batcher.submit([0] + [-i for i in range(1, n)])[0]
    assert runner.entered.wait(TIMEOUT)
    return f


def test_batch_closes_at_max_batch_and_keeps_order() -> None:
    runner, rec = GatedRunner(), Recorder()
    b = Batcher("asr", runner, max_batch=4, max_wait_s=3600, max_queue=64, observer=rec).start()
    first = _blocked(runner, b, n=4)  # a full batch closes at once although max_wait is an hour
    futures = b.submit(list(range(1, 11)))  # 10 items queue up while the runner is busy
    runner.release.set()
    b.stop(timeout_s=TIMEOUT)  # the tail of 2 would wait an hour; stop() flushes it
    assert _results([first, *futures]) == [i * 10 for i in range(11)]
    assert runner.batches == [[0, -1, -2, -3], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


def test_batch_closes_after_max_wait_when_not_full() -> None:
    runner = GatedRunner(block_first=False)
    b = Batcher("asr", runner, max_batch=8, max_wait_s=0.0, max_queue=64).start()
    assert _results(b.submit([1, 2, 3])) == [10, 20, 30]
    assert sum(len(x) for x in runner.batches) == 3
    assert all(len(x) <= 3 for x in runner.batches)
    b.stop()


def test_stop_flushes_a_partial_batch() -> None:
    runner = GatedRunner(block_first=False)
    b = Batcher("asr", runner, max_batch=8, max_wait_s=3600, max_queue=64).start()
    futures = b.submit([1, 2])
    b.stop(timeout_s=TIMEOUT)
    assert _results(futures) == [10, 20]


def test_similar_lengths_are_grouped_oldest_first() -> None:
    runner = GatedRunner()
    b = Batcher("asr", runner, max_batch=3, max_wait_s=3600, max_queue=64).start()
    first = _blocked(runner, b, n=3)
    payloads = [1, 2, 3, 4, 5, 6]
    lengths = [100, 900, 110, 905, 120, 910]
    futures = b.submit(payloads, lengths=lengths)
    runner.release.set()
    _results([first, *futures])
    b.stop()
    assert runner.batches[1] == [1, 3, 5]  # the oldest (length 100) picks the other short ones
    assert runner.batches[2] == [2, 4, 6]


def test_queue_bound_is_all_or_nothing() -> None:
    runner = GatedRunner()
    b = Batcher("asr", runner, max_batch=2, max_wait_s=0.0, max_queue=3).start()
    first = _blocked(runner, b)
    ok = b.submit([1, 2])
    assert b.depth == 2
    with pytest.raises(QueueFull):
        b.submit([3, 4])  # 2 + 2 > 3: nothing is queued
    assert b.depth == 2
    more = b.submit([3])
    assert b.full
    with pytest.raises(QueueFull):
        b.submit([4])
    runner.release.set()
    assert _results([first, *ok, *more]) == [0, 10, 20, 30]
    b.stop()


def test_empty_queue_admits_a_request_longer_than_the_bound() -> None:
    runner = GatedRunner(block_first=False)
    b = Batcher("asr", runner, max_batch=2, max_wait_s=0.0, max_queue=2).start()
    assert _results(b.submit([1, 2, 3, 4, 5])) == [10, 20, 30, 40, 50]
    b.stop()


def test_expired_items_are_skipped_with_deadline_exceeded() -> None:
    now = [100.0]
    runner = GatedRunner()
    b = Batcher("asr", runner, max_batch=8, max_wait_s=0.0, max_queue=64, clock=lambda: now[0]).start()
    first = _blocked(runner, b)
    late = b.submit([1], deadline=150.0)
    fine = b.submit([2], deadline=500.0)
    now[0] = 200.0  # the runner was busy past the first item's deadline
    runner.release.set()
    assert _results([first, *fine]) == [0, 20]
    with pytest.raises(DeadlineExceeded):
        late[0].result(TIMEOUT)
    b.stop()
    assert all(1 not in batch for batch in runner.batches)


def test_cancelled_items_never_reach_the_runner() -> None:
    runner = GatedRunner()
    b = Batcher("asr", runner, max_batch=8, max_wait_s=0.0, max_queue=64).start()
    first = _blocked(runner, b)
    gone, kept = b.submit([1, 2])
    assert gone.cancel()
    runner.release.set()
    assert _results([first, kept]) == [0, 20]
    b.stop()
    assert all(1 not in batch for batch in runner.batches)


def test_runner_error_fails_the_batch_and_the_batcher_survives() -> None:
    calls = {"n": 0}

    def flaky(items: list[int]) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return items

    b = Batcher("asr", flaky, max_batch=8, max_wait_s=0.0, max_queue=64).start()
    (bad,) = b.submit([1])
    with pytest.raises(RuntimeError, match="boom"):
        bad.result(TIMEOUT)
    assert _results(b.submit([7])) == [7]
    b.stop()


def test_wrong_result_count_is_an_error() -> None:
    b = Batcher("asr", lambda items: items[:-1], max_batch=8, max_wait_s=0.0, max_queue=64).start()
    (f,) = b.submit([1])
    with pytest.raises(RuntimeError, match="returned 0 results for 1"):
        f.result(TIMEOUT)
    b.stop()


def test_observer_sees_depth_and_batches() -> None:
    runner, rec = GatedRunner(), Recorder()
    b = Batcher("asr", runner, max_batch=8, max_wait_s=0.0, max_queue=64, observer=rec).start()
    first = _blocked(runner, b)
    futures = b.submit([1, 2, 3])
    runner.release.set()
    _results([first, *futures])
    b.stop()
    assert 3 in rec.depths and rec.depths[-1] == 0
    assert sum(size for size, _ in rec.batches) == 4
    assert all(size == waits for size, waits in rec.batches)


def test_submit_after_stop_is_refused() -> None:
    b = Batcher("asr", lambda items: items, max_batch=8, max_wait_s=0.0, max_queue=64).start()
    b.stop()
    with pytest.raises(QueueFull):
        b.submit([1])
