"""The agent's ledger keeps a duty's status as a `DutyStatus`, stored as the plain string it
always was (on SQLite and on PostgreSQL): a ledger written before the enum existed reads back
without a migration."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import StatementError

from provider.ledger import MIGRATIONS, DutyRow, DutyStatus, Ledger

#: The table as ledgers created it when the status column was a String(16).
_OLD_TABLE = """
CREATE TABLE provider_duties (
    task_id VARCHAR(200) NOT NULL, job_id INTEGER NOT NULL, round INTEGER NOT NULL,
    role VARCHAR(16) NOT NULL, "index" INTEGER NOT NULL, status VARCHAR(16) NOT NULL,
    spec_hash VARCHAR(66) NOT NULL, digest VARCHAR(66), artifact VARCHAR(64),
    failure VARCHAR(64), sends INTEGER NOT NULL, sent_at FLOAT, commit_tx VARCHAR(66),
    reveal_tx VARCHAR(66), notice_posted BOOLEAN NOT NULL, note TEXT,
    created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL, PRIMARY KEY (task_id)
)
"""


def _duty(task_id: str, job_id: int, status: DutyStatus) -> DutyRow:
    return DutyRow(
        task_id=task_id,
        job_id=job_id,
        round=0,
        role="executor",
        index=0,
        status=status,
        spec_hash="0x" + "ab" * 32,
        sends=0,
        notice_posted=False,
    )


def _raw_statuses(url: str) -> list[tuple[str, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as db:
            rows = db.execute(text("SELECT task_id, status FROM provider_duties ORDER BY task_id"))
            return [(str(t), str(s)) for t, s in rows]
    finally:
        engine.dispose()


def test_every_status_fits_the_column_and_is_its_own_string() -> None:
    assert len(DutyStatus) == 11
    for status in DutyStatus:
        assert len(status.value) <= 16
        assert status == status.value and f"{status}" == status.value


def test_statuses_are_stored_as_their_plain_strings(new_db_url: Callable[[str], str]) -> None:
    url = new_db_url("ledger")
    ledger = Ledger(url)
    try:
        ledger.add(_duty("a", 1, DutyStatus.QUEUED))
        ledger.add(_duty("b", 2, DutyStatus.COPYING))
        ledger.update("a", status=DutyStatus.COMMITTED, artifact="f" * 64)
        assert _raw_statuses(url) == [("a", "committed"), ("b", "copying")]
        duty = ledger.get("a")
        assert duty is not None and duty.status is DutyStatus.COMMITTED
        assert [d.task_id for d in ledger.unannounced()] == ["a"]
    finally:
        ledger.close()


def test_a_ledger_written_before_the_enum_reads_back_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(_OLD_TABLE)
        for i, status in enumerate(s.value for s in DutyStatus):
            db.execute(
                "INSERT INTO provider_duties VALUES "
                "(?, ?, 0, 'executor', 0, ?, ?, NULL, NULL, NULL, 1, NULL, NULL, NULL, 0, NULL, "
                "0, 0)",
                (f"t{i:02d}", i, status, "0x" + "ab" * 32),
            )
    ledger = Ledger(f"sqlite:///{path}")
    try:
        assert [d.status for d in ledger.all()] == list(DutyStatus)
        assert all(isinstance(d.status, DutyStatus) for d in ledger.all())
        found = ledger.with_status(DutyStatus.RELEASING, DutyStatus.CLOSED)
        assert [d.status for d in found] == [DutyStatus.RELEASING, DutyStatus.CLOSED]
        ledger.update("t00", status=DutyStatus.COMPUTED)
        assert _raw_statuses(f"sqlite:///{path}")[0] == ("t00", "computed")
    finally:
        ledger.close()


def test_a_status_outside_the_enum_is_refused(new_db_url: Callable[[str], str]) -> None:
    ledger = Ledger(new_db_url("ledger"))
    try:
        ledger.add(_duty("a", 1, DutyStatus.QUEUED))
        with pytest.raises(StatementError, match="not among the defined enum values"):
            ledger.update("a", status="done")
        duty = ledger.get("a")
        assert duty is not None and duty.status is DutyStatus.QUEUED
    finally:
        ledger.close()


def test_a_ledger_written_before_versioning_is_adopted_with_its_indexes(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(_OLD_TABLE)
    Ledger(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        (version,) = db.execute(f"SELECT version_num FROM {MIGRATIONS.version_table}").fetchone()
        indexes = {
            str(name)
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
            )
        }
    assert version == MIGRATIONS.base()
    assert indexes == {"ix_provider_duties_job_id", "ix_provider_duties_status"}
