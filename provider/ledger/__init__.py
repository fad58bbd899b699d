"""The agent's own record of its duties: one row per (job, round, role), kept in its database.

The ledger is what lets an agent be killed and restarted without missing or doubling a commit:
a duty is written before its task is sent, its digest as soon as the worker returns it, and
its commit and reveal transactions once they land. Before sending either transaction the agent
also re-reads the chain, so a transaction that landed just before a crash is recognised.

A duty's status is a `DutyStatus`, stored as its string value (the column is a plain
VARCHAR(16): ledgers written before the enum read back unchanged).

The schema is versioned: opening a ledger applies the revisions in provider/ledger/migrations
it lacks (`marketplace.index.migrate`; the ledger may share its file with the chain index, each
with its own version table).

After a chain rollback the agent moves duties back to what the chain shows (`committed` ->
`computed`, `revealed` -> `committed`, `closed`/`skipped`/`released` -> the live state).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Boolean, Float, Integer, MetaData, String, Text, create_engine, select
from sqlalchemy import Enum as SQLEnum
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from marketplace.index import migrate

__all__ = ["MIGRATIONS", "DutyRow", "DutyStatus", "Ledger", "ledger_metadata"]

#: The ledger's migration environment (provider/ledger/migrations).
MIGRATIONS = migrate.Migrations(
    name="provider ledger",
    directory=Path(__file__).resolve().parent / "migrations",
    version_table="alembic_version_ledger",
    unadoptable=(
        "it holds the agent's duties, so keep the file: finish its jobs with the depin-compute "
        "version that wrote it, then move it aside (or point the agent's db_url at a new one)"
    ),
)


class DutyStatus(StrEnum):
    """Where a duty stands; each member says who moves a duty out of it."""

    #: Task sent (or due: `sent_at` unset), no result yet; the agent's collect or release moves it.
    QUEUED = "queued"
    #: Digest known, the commit is due; the commit step commits it (or skips it, or adopts one).
    COMPUTED = "computed"
    #: Copycat test aid: waiting for another participant's commitment; the copy step commits it.
    COPYING = "copying"
    #: Commitment on-chain; the reveal step reveals it, or the job's end closes it.
    COMMITTED = "committed"
    #: Digest revealed on-chain; the job's end closes it.
    REVEALED = "revealed"
    #: No-show test aid: never committed; the job's end closes it.
    IGNORED = "ignored"
    #: Executor seat that cannot be committed in time; the release step releases or abandons it.
    RELEASING = "releasing"
    #: Seat handed back on-chain (`release`) instead of a no-show; only a rollback moves it.
    RELEASED = "released"
    #: Worker gave up and no release was possible, or a write was refused; only a rollback moves it.
    ABANDONED = "abandoned"
    #: Nothing to do any more (the job moved on before the commit); only a rollback moves it.
    SKIPPED = "skipped"
    #: The job reached a terminal state after the commit; only a rollback moves it.
    CLOSED = "closed"


#: The status column: the members' values in a VARCHAR(16), as before the enum (no CHECK
#: constraint, no migration); a value outside the enum is refused on write.
_STATUS_COLUMN = SQLEnum(
    DutyStatus,
    native_enum=False,
    create_constraint=False,
    length=16,
    validate_strings=True,
    values_callable=lambda members: [m.value for m in members],
)


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
    status: Mapped[DutyStatus] = mapped_column(_STATUS_COLUMN, index=True)
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


def ledger_metadata() -> MetaData:
    """The ledger's tables as the models describe them (what the migrations must produce)."""
    return _Base.metadata


class Ledger:
    """Duties in the database at `url`, upgraded to the newest schema on opening (a new
    database is created)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url)
        try:
            migrate.upgrade(self.engine, MIGRATIONS)
        except BaseException:
            self.engine.dispose()
            raise
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

    def with_status(self, *statuses: DutyStatus) -> list[DutyRow]:
        with self._sessions() as s:
            query = select(DutyRow).where(DutyRow.status.in_(statuses)).order_by(DutyRow.job_id)
            return list(s.scalars(query))

    def unannounced(self) -> list[DutyRow]:
        """Committed (or later) duties with a result artifact whose notice is not posted."""
        with self._sessions() as s:
            query = (
                select(DutyRow)
                .where(
                    DutyRow.status.in_(
                        (DutyStatus.COMMITTED, DutyStatus.REVEALED, DutyStatus.CLOSED)
                    ),
                    DutyRow.notice_posted.is_(False),
                    DutyRow.artifact.is_not(None),
                )
                .order_by(DutyRow.job_id)
            )
            return list(s.scalars(query))

    def all(self) -> Sequence[DutyRow]:
        with self._sessions() as s:
            return list(s.scalars(select(DutyRow).order_by(DutyRow.job_id)))
