"""The keeper's decisions: which jobs to draw audits for, finalize or expire. Pure, no I/O.

Every call the keeper plans is permissionless; a planned id must be one the contract accepts
when the transaction lands in a later block (number > head, timestamp >= now):

- ``drawAudits``: Committed, draw not yet recorded, the commit block already mined (head >
  commit block). Drawn soon after the commit: a draw older than 256 blocks forces an audit.
- ``finalizeBatch``: Committed past its challenge deadline (the contract draws itself if nobody
  did); Revealing once every committer revealed or the reveal deadline passed; Auditing with
  verifiers assigned, past the audit deadline.
- ``expireBatch``: Open or Assigned past the deadline; Auditing without verifiers past the
  deadline.

An id appears in at most one list; each list is chunked into batches of at most `max_batch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from marketplace.protocol.client import Job, JobState

#: IJobMarket.Job.flags bit 2: the audit draw ran and did not select the job.
FLAG_DRAWN = 1 << 2


@dataclass(frozen=True)
class JobView:
    """What the keeper needs to know about one job (from `Market.job` plus the executor's
    commit block, or from the relayer's projection)."""

    job_id: int
    state: JobState
    deadline: int
    flags: int = 0
    replicas: int = 1
    participants: int = 0
    commit_mask: int = 0
    reveal_mask: int = 0
    #: Block of executor 0's commit (0 before it).
    commit_block: int = 0

    @classmethod
    def of(cls, job_id: int, job: Job, commit_block: int = 0) -> JobView:
        return cls(
            job_id=job_id,
            state=job.state,
            deadline=job.deadline,
            flags=job.flags,
            replicas=job.replicas,
            participants=job.participants,
            commit_mask=job.commit_mask,
            reveal_mask=job.reveal_mask,
            commit_block=commit_block,
        )

    @property
    def drawn(self) -> bool:
        return bool(self.flags & FLAG_DRAWN)

    @property
    def has_verifiers(self) -> bool:
        return self.participants != self.replicas


@dataclass(frozen=True)
class KeeperPlan:
    """Job ids per keeper call, each list chunked into batches."""

    draw_audits: list[list[int]] = field(default_factory=list)
    finalize: list[list[int]] = field(default_factory=list)
    expire: list[list[int]] = field(default_factory=list)

    def ids(self, kind: str) -> list[int]:
        """Every id of one call kind ("draw_audits", "finalize", "expire"), batches joined."""
        batches: list[list[int]] = getattr(self, kind)
        return [job_id for batch in batches for job_id in batch]

    @property
    def empty(self) -> bool:
        return not (self.draw_audits or self.finalize or self.expire)


def action(view: JobView, now: int, head: int) -> str | None:
    """The one keeper call to make for `view` now, or None."""
    past = now > view.deadline
    s = view.state
    if s == JobState.COMMITTED:
        if past:
            return "finalize"
        if not view.drawn and head > view.commit_block:
            return "draw_audits"
        return None
    if s == JobState.REVEALING:
        return "finalize" if past or view.reveal_mask == view.commit_mask else None
    if not past:
        return None
    if s == JobState.AUDITING:
        return "finalize" if view.has_verifiers else "expire"
    if s in (JobState.OPEN, JobState.ASSIGNED):
        return "expire"
    return None


def chunk(ids: Sequence[int], size: int) -> list[list[int]]:
    if size < 1:
        raise ValueError("batch size must be at least 1")
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def plan(views: Iterable[JobView], now: int, head: int, max_batch: int = 50) -> KeeperPlan:
    """The keeper calls due at block time `now` with `head` the latest mined block."""
    due: dict[str, list[int]] = {"draw_audits": [], "finalize": [], "expire": []}
    seen: set[int] = set()
    for view in sorted(views, key=lambda v: v.job_id):
        if view.job_id in seen:
            continue
        seen.add(view.job_id)
        kind = action(view, now, head)
        if kind is not None:
            due[kind].append(view.job_id)
    return KeeperPlan(
        draw_audits=chunk(due["draw_audits"], max_batch),
        finalize=chunk(due["finalize"], max_batch),
        expire=chunk(due["expire"], max_batch),
    )
