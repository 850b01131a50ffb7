"""Memory admission: what admitted requests may hold at once, decided before the memory is spent.

Each request (and each WebSocket session) holds a :class:`Reservation` against the worker's
:class:`MemoryBudget` (``--memory-budget-mb``). The Gate reserves an estimate from the
declared body size before a byte of the body is read; the decoder grows the reservation to
the real cost once the audio header says how many frames, channels and which sample rate
the audio has (a small compressed file can decode to a lot of float32 samples); a stream
grows it with every chunk. A growth that does not fit is refused (503 ``queue_full``), except
for a request that is alone: with nothing else admitted it always proceeds, so a limit below
the largest allowed request never locks that request out.
"""

from __future__ import annotations

import threading

# bytes held per declared body byte before the audio header is read: the body itself, the
# decoded float32 samples (2x the PCM16 bytes) and a mono/resampled copy
BODY_FACTOR = 4
FLOAT32 = 4


class MemoryBudget:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.used = 0
        self._lock = threading.Lock()

    def reservation(self) -> "Reservation":
        return Reservation(self)

    def _grow(self, res: "Reservation", total: int) -> bool:
        with self._lock:
            extra = total - res.bytes
            if extra <= 0:
                return True
            alone = self.used == res.bytes
            if not alone and self.used + extra > self.limit:
                return False
            self.used += extra
            res.bytes = total
            return True

    def _release(self, res: "Reservation") -> None:
        with self._lock:
            self.used -= res.bytes
            res.bytes = 0


class Reservation:
    """Bytes one request holds; grows, never shrinks until :meth:`release`. Thread-safe."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.bytes = 0

    def grow_to(self, total: int) -> bool:
        return self.budget._grow(self, int(total))

    def release(self) -> None:
        self.budget._release(self)


def decoded_cost(frames: int, channels: int, sample_rate: int, target_rate: int) -> int:
    """Bytes the decoder holds for audio of this shape: the read (all channels), the mono mix, the resampled copy."""
    frames = max(int(frames), 0)
    out = frames * target_rate // max(int(sample_rate), 1)
    return FLOAT32 * (frames * max(int(channels), 1) + frames + out)
