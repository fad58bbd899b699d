"""Which database errors the relayer waits out (the database is unavailable) and which it does
not (a statement the database refuses), with errors raised by a real SQLite database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from marketplace.index.outages import database_unavailable, reason, safe_url


def _raised(url: str, statement: str) -> DBAPIError:
    engine = create_engine(url)
    try:
        with pytest.raises(DBAPIError) as caught, engine.begin() as c:
            c.execute(text(statement))
    finally:
        engine.dispose()
    return caught.value


def test_locked_and_unreachable_databases_are_outages(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    setup = sqlite3.connect(db)
    setup.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    setup.commit()
    setup.execute("BEGIN EXCLUSIVE")  # held: a writer elsewhere waits, then gives up
    try:
        locked = _raised(f"sqlite:///{db}?timeout=0.1", "INSERT INTO t VALUES (1)")
    finally:
        setup.rollback()
        setup.close()
    assert database_unavailable(locked)
    assert reason(locked) == "OperationalError: database is locked"  # no statement, no params

    (tmp_path / "file").write_text("not a directory")
    unreachable = _raised(f"sqlite:///{tmp_path / 'file' / 'r.sqlite3'}", "SELECT 1")
    assert database_unavailable(unreachable)


def test_a_refused_statement_is_not_an_outage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
        c.execute(text("INSERT INTO t VALUES (1)"))
    engine.dispose()
    duplicate = _raised(url, "INSERT INTO t VALUES (1)")
    assert not database_unavailable(duplicate)
    assert not database_unavailable(ValueError("not a database error"))


def test_urls_in_logs_hide_the_password() -> None:
    shown = safe_url("postgresql://relayer:s3cret@db.internal:5432/depin")
    assert "s3cret" not in shown and "db.internal:5432/depin" in shown
