"""One warning when a dependency goes away, one line when it is back, capped backoff between.

Long-running processes (agent, relayer, keeper, workers) poll their dependencies (RPC, Redis,
relayer API, database) in loops that run several times a second. Logging every failed attempt
buries the one line an operator needs; logging none hides the outage. `Outage` logs the first
failure of an outage at WARNING, later failures of the same outage at DEBUG, and the recovery
at INFO with how long it lasted; `delay()` is the wait before the next attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["Outage"]


class Outage:
    """The state of one dependency (`name`, e.g. "relayer http://127.0.0.1:8700")."""

    def __init__(
        self,
        name: str,
        logger: logging.Logger,
        *,
        first_delay: float = 0.5,
        max_delay: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if first_delay <= 0 or max_delay < first_delay:
            raise ValueError("Outage needs 0 < first_delay <= max_delay")
        self.name = name
        self.log = logger
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.clock = clock
        #: When the current outage began (monotonic clock); None while the dependency is up.
        self.since: float | None = None
        self.failures = 0
        #: Outages seen so far (each logged once).
        self.count = 0
        self._next_try = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException | str) -> float:
        """Records a failed attempt; returns the seconds to wait before the next one."""
        now = self.clock()
        if self.since is None:
            self.since = now
            self.count += 1
            self.failures = 0
            self.log.warning(
                "%s unavailable: %s; retrying with backoff up to %.0f s, quietly until it is back",
                self.name,
                exc,
                self.max_delay,
            )
        else:
            self.log.debug("%s still unavailable: %s", self.name, exc)
        delay = min(self.first_delay * 2.0**self.failures, self.max_delay)
        self.failures += 1
        self._next_try = now + delay
        return delay

    def ok(self) -> None:
        """Records a successful attempt; logs the recovery once."""
        if self.since is not None:
            self.log.info(
                "%s is back after %.1f s (%d failed attempts)",
                self.name,
                self.clock() - self.since,
                self.failures,
            )
        self.since = None
        self.failures = 0
        self._next_try = 0.0

    def ready(self) -> bool:
        """Whether an attempt is due: always while up, after the backoff delay while down."""
        return self.since is None or self.clock() >= self._next_try

    def elapsed(self) -> float:
        """Seconds since the current outage began; 0 while up."""
        return 0.0 if self.since is None else self.clock() - self.since
