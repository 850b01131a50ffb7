"""Repeated traffic: draw catalog items by popularity, build their payloads on demand, keep a few.

A scenario's ``repeat`` block (:class:`toolkit.scenario.RepeatSpec`) says how often requests
repeat: request ``k`` names catalog item ``i`` with the popularity model's probability ``p_i``
(Zipf or uniform, item 0 the most popular), independently of every other request, so the
expected hit ratio of a cache is computable (:mod:`toolkit.capacity.cache`).

Draws take one ``random()`` from the driver's request-pick stream, which is seeded by the scenario
seed and the process's part of a distributed run: the same seed gives the same items in every
process, run after run. Item ``i``'s payload depends on ``i`` and the seed alone (built by the
caller's ``build``), so every process sends the same bytes for the same item. Payloads are built
when drawn and the most recent ones kept (at most ``max_items`` and ``max_bytes``): a catalog of
a million clips never sits in memory.
"""

from __future__ import annotations

import bisect
import random
from array import array
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from toolkit.capacity.cache import popularity

T = TypeVar("T")


class Catalog(Generic[T]):
    """Items ``0 .. spec.catalog - 1`` drawn by popularity; ``build(i)`` makes item ``i``'s payload
    and ``size(payload)`` says how many bytes it holds (for the bound on what is kept)."""

    def __init__(self, spec: Any, build: Callable[[int], T], size: Callable[[T], int] = lambda _p: 0, *,
                 max_items: int = 256, max_bytes: int = 64 * 2**20) -> None:
        self.spec = spec
        self.n = int(spec.catalog)
        self._build = build
        self._size = size
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._uniform = spec.distribution == "uniform" or not spec.s
        self._cum = array("d")
        if not self._uniform:
            self._cum.frombytes(popularity(self.n, spec.distribution, float(spec.s)).cumsum().tobytes())
        self._kept: OrderedDict[int, tuple[T, int]] = OrderedDict()
        self._kept_bytes = 0
        self.built = 0  # payloads built (kept ones are reused)

    def draw(self, rng: random.Random) -> int:
        """The next item: exactly one ``rng.random()``."""
        u = rng.random()
        if self._uniform:
            return min(int(u * self.n), self.n - 1)
        return min(bisect.bisect_right(self._cum, u * self._cum[-1]), self.n - 1)

    def payload(self, item: int) -> T:
        """Item ``item``'s payload, built now or kept from a recent draw."""
        kept = self._kept.get(item)
        if kept is not None:
            self._kept.move_to_end(item)
            return kept[0]
        p = self._build(item)
        self.built += 1
        nbytes = int(self._size(p))
        if nbytes <= self.max_bytes:
            self._kept[item] = (p, nbytes)
            self._kept_bytes += nbytes
            while len(self._kept) > self.max_items or self._kept_bytes > self.max_bytes:
                _old, (_p, b) = self._kept.popitem(last=False)
                self._kept_bytes -= b
        return p

    @property
    def kept(self) -> int:
        return len(self._kept)

    @property
    def kept_bytes(self) -> int:
        return self._kept_bytes
