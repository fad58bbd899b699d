"""Test aids: how a provider's agent behaves (`DEPIN_PROVIDER_BEHAVIOR`, DESIGN section 4).

Only `Honest` belongs on a real provider. The others exist so the demo and the tests can show
the market catching cheaters, and each gets its provider slashed:

    lazy      commits a made-up digest without running anything (caught by the audit)
    copycat   copies another participant's hash and seal from its commit, so it has no digest
              to reveal (a copycat executor of a single-replica job has nobody to copy and
              behaves as lazy)
    no-show   never commits

The agent holds one `Strategy` (`strategy_for(settings.behavior)`) and asks it the few
decisions that differ; everything else (commit, reveal, release, rollbacks) is the same code
for all of them. A copycat's copying is the agent's copy step, which only finds `copying`
duties; a duty without a digest is never revealed.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Final

from provider.ledger import DutyStatus
from provider.settings import Behavior

__all__ = [
    "Copycat",
    "Honest",
    "Lazy",
    "NoShow",
    "Start",
    "Strategy",
    "made_up_digest",
    "strategy_for",
]


@dataclass(frozen=True)
class Start:
    """How a duty found on-chain enters the ledger."""

    status: DutyStatus
    #: The digest to commit, when it is decided without a run (0x-prefixed hex).
    digest: str | None = None
    note: str | None = None

    @property
    def runs(self) -> bool:
        """Whether the duty goes to a worker (a task is sent once the duty is written)."""
        return self.status is DutyStatus.QUEUED


class Strategy(ABC):
    """The decisions a behaviour makes for the agent."""

    name: ClassVar[Behavior]
    #: Whether a duty skipped before a rollback is followed back to what the chain shows once
    #: its seat can commit again. Only an honest agent redoes such work.
    revives_skipped: ClassVar[bool] = False

    @abstractmethod
    def start(self, job_id: int, *, replicas: int, verifier: bool) -> Start:
        """How a new duty starts: for job `job_id` of `replicas` executors, in a verifier seat
        or an executor one."""

    def restart(self) -> DutyStatus | None:
        """The status of a duty without a digest whose seat the chain shows able to commit
        again (after a rollback); None leaves the duty as it is."""
        return None


class Honest(Strategy):
    """Runs every duty on a worker and commits the digest it computed."""

    name = "honest"
    revives_skipped = True

    def start(self, job_id: int, *, replicas: int, verifier: bool) -> Start:
        return Start(DutyStatus.QUEUED)

    def restart(self) -> DutyStatus | None:
        return DutyStatus.QUEUED


class Lazy(Strategy):
    """Test aid: commits a made-up digest without running the job."""

    name = "lazy"

    def start(self, job_id: int, *, replicas: int, verifier: bool) -> Start:
        return Start(DutyStatus.COMPUTED, digest=made_up_digest(job_id))


class Copycat(Strategy):
    """Test aid: copies another participant's commitment; it cannot reveal."""

    name = "copycat"

    def start(self, job_id: int, *, replicas: int, verifier: bool) -> Start:
        if replicas == 1 and not verifier:
            return Start(DutyStatus.COMPUTED, digest=made_up_digest(job_id))
        return Start(DutyStatus.COPYING)

    def restart(self) -> DutyStatus | None:
        return DutyStatus.COPYING


class NoShow(Strategy):
    """Test aid: takes the seat and never commits."""

    name = "no-show"

    def start(self, job_id: int, *, replicas: int, verifier: bool) -> Start:
        return Start(DutyStatus.IGNORED, note="no-show behaviour: never commits")


_STRATEGIES: Final[dict[Behavior, type[Strategy]]] = {
    s.name: s for s in (Honest, Lazy, Copycat, NoShow)
}


def strategy_for(behavior: Behavior) -> Strategy:
    """The strategy of the `behavior` setting."""
    return _STRATEGIES[behavior]()


def made_up_digest(job_id: int) -> str:
    """The digest a cheating test aid commits: a value no real run produces (0x hex)."""
    return "0x" + hashlib.sha256(b"depin-lazy-provider" + job_id.to_bytes(32, "big")).hexdigest()
