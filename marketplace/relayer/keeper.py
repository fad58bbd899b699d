"""The keeper's decisions: which jobs to draw audits for, staff, finalize or expire. Pure, no I/O.

Every call the keeper plans is permissionless; a planned id must be one the contract accepts
when the transaction lands in a later block (number > head, timestamp >= now):

- ``drawAudits``: Committed, draw not yet recorded, the seed block already mined (head > the
  commit block, or > the re-seed block once a draw found its block hash aged out and re-seeded).
- ``staffAudits``: Auditing, the current round not fully staffed, before its staffing deadline,
  from the block after the round's seed block. The contract draws the verifiers on-chain; a call
  whose seed aged out re-seeds (AuditReseeded) and the keeper calls again from the next block.
- ``finalizeBatch``: Committed past its challenge deadline (the contract draws itself if nobody
  did); Revealing once every committer revealed or the reveal deadline passed; Auditing with the
  round staffed, past the commit deadline.
- ``expireBatch``: Open or Assigned past the deadline; Auditing not staffed past the deadline
  (no verdict: refund).

An id appears in at most one list; each list is chunked into batches of at most `max_batch`.

Batched calls never revert on one item: the contract skips it with BatchItemSkipped. `SkipBook`
remembers those skips per (job, call) and the job's on-chain view when they happened; `plan`
leaves out an item skipped `max_skips` times while the job's view stayed the same, so a job the
model misjudges is not retried forever (it is tried again as soon as anything about it changes).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from marketplace.protocol.client import FLAG_DRAWN, FLAG_RESEEDED, Job, JobState
from marketplace.relayer.settings import MAX_BATCH, MAX_SKIPS

#: Keeper call kinds, in the order they are sent.
KINDS = ("draw_audits", "staff_audits", "finalize", "expire")
#: Least seconds between two staffing calls for one job whose round the last call left open
#: (no eligible verifier yet: a provider may still stake or come back).
STAFF_RETRY_SECONDS: Final = 5.0


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
    #: Current audit round (0 before any audit), its seats and its first verifier's index.
    round: int = 0
    seats: int = 0
    verifiers_from: int = 0
    #: Block whose hash seeds the current verifier draw, or a re-seeded audit draw.
    seed_block: int = 0

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
            round=job.round,
            seats=job.seats,
            verifiers_from=job.verifiers_from,
            seed_block=job.seed_block,
        )

    @property
    def drawn(self) -> bool:
        return bool(self.flags & FLAG_DRAWN)

    @property
    def reseeded(self) -> bool:
        return bool(self.flags & FLAG_RESEEDED)

    @property
    def draw_seed_block(self) -> int:
        """The block whose hash seeds the replicas = 1 audit draw."""
        return self.seed_block if self.reseeded else self.commit_block

    @property
    def staffed(self) -> bool:
        """Every seat of the current audit round is filled."""
        return self.participants - self.verifiers_from >= self.seats

    @property
    def has_verifiers(self) -> bool:
        return self.participants > self.replicas


@dataclass(frozen=True)
class KeeperPlan:
    """Job ids per keeper call, each list chunked into batches."""

    draw_audits: list[list[int]] = field(default_factory=list)
    staff_audits: list[list[int]] = field(default_factory=list)
    finalize: list[list[int]] = field(default_factory=list)
    expire: list[list[int]] = field(default_factory=list)

    def ids(self, kind: str) -> list[int]:
        """Every id of one call kind (one of KINDS), batches joined."""
        batches: list[list[int]] = getattr(self, kind)
        return [job_id for batch in batches for job_id in batch]

    @property
    def empty(self) -> bool:
        return not (self.draw_audits or self.staff_audits or self.finalize or self.expire)


def action(view: JobView, now: int, head: int) -> str | None:
    """The one keeper call to make for `view` now, or None."""
    past = now > view.deadline
    s = view.state
    if s == JobState.COMMITTED:
        seeded = head > view.draw_seed_block
        if past:
            # finalize draws the audit itself when nobody did: it needs the seed block mined.
            return "finalize" if view.drawn or seeded else None
        if not view.drawn and seeded:
            return "draw_audits"
        return None
    if s == JobState.REVEALING:
        return "finalize" if past or view.reveal_mask == view.commit_mask else None
    if s == JobState.AUDITING:
        if past:
            return "finalize" if view.staffed else "expire"
        if not view.staffed and head > view.seed_block:
            return "staff_audits"
        return None
    if not past:
        return None
    if s in (JobState.OPEN, JobState.ASSIGNED):
        return "expire"
    return None


def fingerprint(view: JobView) -> tuple[int, ...]:
    """What identifies a job's on-chain situation: a skip is retried once any of it changes."""
    return (
        int(view.state),
        view.deadline,
        view.flags,
        view.participants,
        view.commit_mask,
        view.reveal_mask,
        view.round,
        view.seed_block,
    )


class SkipBook:
    """Items the contract skipped (BatchItemSkipped), counted per (job, call) while the job's
    view stays the same."""

    def __init__(self, max_skips: int = MAX_SKIPS) -> None:
        if max_skips < 1:
            raise ValueError("max_skips must be at least 1")
        self.max_skips = max_skips
        self._skips: dict[tuple[int, str], tuple[tuple[int, ...], int]] = {}

    def record(self, view: JobView, kind: str) -> int:
        """Counts one skip of `kind` for `view`'s job; returns the count for this view."""
        key = (view.job_id, kind)
        fp = fingerprint(view)
        prior = self._skips.get(key)
        count = prior[1] + 1 if prior is not None and prior[0] == fp else 1
        self._skips[key] = (fp, count)
        return count

    def blocked(self, view: JobView, kind: str) -> bool:
        """Whether `kind` was skipped `max_skips` times for this very view of the job."""
        prior = self._skips.get((view.job_id, kind))
        return prior is not None and prior[0] == fingerprint(view) and prior[1] >= self.max_skips

    def forget(self, live: Iterable[int]) -> None:
        """Drops the entries of jobs no longer live."""
        keep = set(live)
        self._skips = {k: v for k, v in self._skips.items() if k[0] in keep}

    def __len__(self) -> int:
        return len(self._skips)


def chunk(ids: Sequence[int], size: int) -> list[list[int]]:
    if size < 1:
        raise ValueError("batch size must be at least 1")
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def plan(
    views: Iterable[JobView],
    now: int,
    head: int,
    max_batch: int = MAX_BATCH,
    skips: SkipBook | None = None,
    staff_resting: Collection[int] = (),
) -> KeeperPlan:
    """The keeper calls due at block time `now` with `head` the latest mined block, leaving out
    the items `skips` says the contract keeps skipping and the staffing of the jobs in
    `staff_resting` (a staffing call for them landed less than `STAFF_RETRY_SECONDS` ago
    without filling the round: each call is a transaction, and its block would wake the keeper
    again at once)."""
    due: dict[str, list[int]] = {kind: [] for kind in KINDS}
    seen: set[int] = set()
    for view in sorted(views, key=lambda v: v.job_id):
        if view.job_id in seen:
            continue
        seen.add(view.job_id)
        kind = action(view, now, head)
        if kind == "staff_audits" and view.job_id in staff_resting:
            continue
        if kind is not None and not (skips is not None and skips.blocked(view, kind)):
            due[kind].append(view.job_id)
    return KeeperPlan(
        draw_audits=chunk(due["draw_audits"], max_batch),
        staff_audits=chunk(due["staff_audits"], max_batch),
        finalize=chunk(due["finalize"], max_batch),
        expire=chunk(due["expire"], max_batch),
    )
