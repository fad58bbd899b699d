"""The relayers' lead (marketplace.index.lead): on PostgreSQL one holder at a time, freed when
its holder lets go or its database session ends; on SQLite always held (the relayer runs alone)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from marketplace.index.lead import LeaderLock, lock_key
from tests.pg_fixture import PostgresServer

KEY = lock_key(31337, "0x" + "33" * 20)


@pytest.fixture
def engines(postgres: PostgresServer) -> Iterator[Callable[[], Engine]]:
    url = postgres.new_database("lead")
    made: list[Engine] = []

    def engine() -> Engine:
        made.append(create_engine(url))
        return made[-1]

    yield engine
    for e in made:
        e.dispose()


def test_one_holder_at_a_time_and_the_next_takes_it_on_release(
    engines: Callable[[], Engine],
) -> None:
    first, second = LeaderLock(engines(), KEY), LeaderLock(engines(), KEY)
    assert first.shared and second.shared
    assert first.hold() is True
    assert first.hold() is True  # kept
    assert second.hold() is False
    first.release()
    assert second.hold() is True
    assert first.hold() is False
    second.release()


def test_a_holder_whose_session_ends_loses_the_lock_to_the_next(
    engines: Callable[[], Engine], postgres: PostgresServer
) -> None:
    first, second = LeaderLock(engines(), KEY), LeaderLock(engines(), KEY)
    assert first.hold() is True
    # What a killed leader or a dropped connection leaves: the server ends the session.
    url = first.engine.url.render_as_string(hide_password=False)
    ended = postgres.sql(
        url,
        "SELECT pid, pg_terminate_backend(pid) FROM pg_locks "
        "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
    )
    assert len(ended) == 1 and ended[0][1] is True
    # pg_terminate_backend only signals the session: the lock goes when its process has exited.
    _wait_for_exit(postgres, url, ended[0][0])
    assert second.hold() is True
    assert first.hold() is False  # its dead session noticed, the lock taken by the other
    second.release()
    assert first.hold() is True
    first.release()


def _wait_for_exit(postgres: PostgresServer, url: str, pid: int) -> None:
    deadline = time.monotonic() + 10
    alive = (
        f"SELECT 1 FROM pg_stat_activity WHERE pid = {int(pid)} "
        f"UNION ALL SELECT 1 FROM pg_locks WHERE pid = {int(pid)}"
    )
    while postgres.sql(url, alive):
        assert time.monotonic() < deadline, f"session {pid} still running 10 s after its end"
        time.sleep(0.01)


def test_other_deployments_have_their_own_lock(engines: Callable[[], Engine]) -> None:
    other = lock_key(31337, "0x" + "44" * 20)
    assert other != KEY and lock_key(31337, "0x" + "33" * 20) == KEY
    mine, theirs = LeaderLock(engines(), KEY), LeaderLock(engines(), other)
    assert mine.hold() is True and theirs.hold() is True
    mine.release()
    theirs.release()


def test_on_sqlite_every_relayer_leads_alone(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'relayer.sqlite3'}")
    try:
        a, b = LeaderLock(engine, KEY), LeaderLock(engine, KEY)
        assert not a.shared
        assert a.hold() is True and b.hold() is True
        a.release()
    finally:
        engine.dispose()
