"""Time budgets of a duty: how long a transient failure is worth retrying, from the job's
on-chain deadline.

A duty is worth another attempt while chain time + `margin` (what a run and its commit take)
is still before the deadline; the wait between attempts doubles up to a cap and never runs past
the last useful moment. Chain time is the latest block's timestamp; between two reads (or while
the RPC is down) it is extrapolated with the local monotonic clock from the last one read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Budget", "ChainClock"]


@dataclass(frozen=True)
class Budget:
    """Retry rules of one duty: `margin` seconds are kept before the deadline for the run and
    the commit; waits start at `first_delay` and double up to `max_delay`."""

    margin: float
    first_delay: float = 1.0
    max_delay: float = 20.0

    def __post_init__(self) -> None:
        if self.margin < 0 or self.first_delay <= 0 or self.max_delay < self.first_delay:
            raise ValueError("Budget needs margin >= 0 and 0 < first_delay <= max_delay")

    def feasible(self, chain_now: float, deadline: int) -> bool:
        """Whether a run started at `chain_now` can still be committed by `deadline`."""
        return chain_now + self.margin <= deadline

    def delay(self, attempt: int) -> float:
        """The capped wait after failed attempt number `attempt` (0 for the first)."""
        return float(min(self.first_delay * 2.0 ** min(attempt, 32), self.max_delay))

    def next_wait(
        self, attempt: int, chain_now: float | None, deadline: int | None
    ) -> float | None:
        """Seconds to wait before the next attempt after failed attempt `attempt`, or None when
        no attempt can meet `deadline` any more. With no deadline (or no chain time) known,
        the wait is the plain capped backoff."""
        wait = self.delay(attempt)
        if deadline is None or chain_now is None:
            return wait
        room = deadline - self.margin - chain_now
        if room < 0:
            return None
        return min(wait, room)


class ChainClock:
    """Chain time from the last block timestamp read, moved on by the local clock since."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._read: tuple[float, float] | None = None

    def observe(self, block_timestamp: float) -> None:
        """Records the latest block's timestamp, read just now."""
        self._read = (float(block_timestamp), self._monotonic())

    def now(self) -> float | None:
        """The estimated chain time; None before any block was read."""
        if self._read is None:
            return None
        timestamp, at = self._read
        return timestamp + (self._monotonic() - at)
