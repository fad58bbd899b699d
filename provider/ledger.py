"""The agent's own record of its duties: one row per (job, round, role), kept in its database.

The ledger is what lets an agent be killed and restarted without missing or doubling a commit:
a duty is written before its task is sent, its digest as soon as the worker returns it, and
its commit and reveal transactions once they land. Before sending either transaction the agent
also re-reads the chain, so a transaction that landed just before a crash is recognised.

Duty statuses::

    queued      a task was sent (or is due: `sent_at` unset); waiting for the worker's result
    computed    the digest is known; the commit is due
    copying     (copycat test aid) waiting for another participant's commitment to copy
    committed   the commitment is on-chain
    revealed    the digest is revealed on-chain
    ignored     (no-show test aid) never committed
    releasing   an executor seat that cannot be computed and committed in time: to release
    released    the seat was handed back on-chain (`release`) instead of a no-show
    abandoned   the worker gave up (deadline, crash budget) and no release was possible, or
                the commit was refused
    skipped     nothing to do any more (the job moved on before the commit)
    closed      the job reached a terminal state after the commit

After a chain rollback the agent moves duties back to what the chain shows (`committed` ->
`computed`, `revealed` -> `committed`, `closed`/`skipped`/`released` -> the live state).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Boolean, Float, Integer, String, Text, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

__all__ = ["DutyRow", "Ledger"]


class _Base(DeclarativeBase):
    pass


class DutyRow(_Base):
    """One duty of this provider: execute (or verify) a job and commit, then reveal."""

    __tablename__ = "provider_duties"

    task_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    round: Mapped[int]
    role: Mapped[str] = mapped_column(String(16))
    #: Participant index in the job's round (the bit of its commit and reveal masks).
    index: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), index=True)
    #: Spec hash of the job, 0x-prefixed hex.
    spec_hash: Mapped[str] = mapped_column(String(66))
    digest: Mapped[str | None] = mapped_column(String(66))
    artifact: Mapped[str | None] = mapped_column(String(64))
    failure: Mapped[str | None] = mapped_column(String(64))
    sends: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[float | None] = mapped_column(Float)
    commit_tx: Mapped[str | None] = mapped_column(String(66))
    reveal_tx: Mapped[str | None] = mapped_column(String(66))
    notice_posted: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class Ledger:
    """Duties in the database at `url` (the table is created when missing)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url)
        _Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    def get(self, task_id: str) -> DutyRow | None:
        with self._sessions() as s:
            return s.get(DutyRow, task_id)

    def add(self, duty: DutyRow) -> None:
        now = time.time()
        duty.created_at = duty.updated_at = now
        with self.session() as s:
            s.add(duty)

    def update(self, task_id: str, **values: object) -> None:
        with self.session() as s:
            row = s.get(DutyRow, task_id)
            if row is None:
                raise KeyError(task_id)
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = time.time()

    def with_status(self, *statuses: str) -> list[DutyRow]:
        with self._sessions() as s:
            query = select(DutyRow).where(DutyRow.status.in_(statuses)).order_by(DutyRow.job_id)
            return list(s.scalars(query))

    def unannounced(self) -> list[DutyRow]:
        """Committed (or later) duties with a result artifact whose notice is not posted."""
        with self._sessions() as s:
            query = (
                select(DutyRow)
                .where(
                    DutyRow.status.in_(("committed", "revealed", "closed")),
                    DutyRow.notice_posted.is_(False),
                    DutyRow.artifact.is_not(None),
                )
                .order_by(DutyRow.job_id)
            )
            return list(s.scalars(query))

    def all(self) -> Sequence[DutyRow]:
        with self._sessions() as s:
            return list(s.scalars(select(DutyRow).order_by(DutyRow.job_id)))
