"""The liveness book in the index database: shared by every relayer on it, one row per provider,
newer heartbeats only, and kept in memory while the database is down. Run on SQLite and on
PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import func, select

from marketplace.index.liveness import StoreLivenessBook
from marketplace.index.schema import HeartbeatRow
from marketplace.index.store import Store
from marketplace.protocol.heartbeat import Heartbeat, sign_heartbeat
from tests.pg_fixture import PostgresServer

PROVIDER: LocalAccount = Account.from_key(bytes(31) + b"\x01")
OTHER: LocalAccount = Account.from_key(bytes(31) + b"\x02")
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
NOW = 1_700_000_000


def beat(account: LocalAccount = PROVIDER, timestamp: int = NOW, load: int = 1) -> Heartbeat:
    fields: dict[str, Any] = {"chain_id": 31337, "market": MARKET, "capacity": 4}
    return sign_heartbeat(
        account, timestamp=timestamp, load=load, profiles=[1, 0], **fields
    ).heartbeat


@pytest.fixture
def stores(new_db_url: Callable[[str], str]) -> Iterator[tuple[Store, Store]]:
    """Two stores on one database: a leader's and its standby's."""
    url = new_db_url("relayer")
    leader, standby = Store(url), Store(url)
    yield leader, standby
    leader.close()
    standby.close()


def rows(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(HeartbeatRow)) or 0)


def test_a_standby_reads_what_the_leader_recorded(stores: tuple[Store, Store]) -> None:
    leader, standby = StoreLivenessBook(stores[0]), StoreLivenessBook(stores[1])
    hb = beat()
    assert leader.record(PROVIDER.address.lower(), hb)
    assert standby.last(PROVIDER.address) == hb
    assert standby.snapshot() == {PROVIDER.address: hb}
    assert standby.is_live(PROVIDER.address, NOW + 45, interval=15, missed=3)
    assert not standby.is_live(PROVIDER.address, NOW + 46, interval=15, missed=3)
    assert standby.last(OTHER.address) is None
    assert not standby.is_live(OTHER.address, NOW, interval=15)


def test_only_newer_heartbeats_replace_the_held_one(stores: tuple[Store, Store]) -> None:
    leader, standby = StoreLivenessBook(stores[0]), StoreLivenessBook(stores[1])
    assert leader.record(PROVIDER.address, beat(timestamp=NOW))
    # A replay, or an older one arriving late at the other relayer: refused, the held one stays.
    assert not standby.record(PROVIDER.address, beat(timestamp=NOW))
    assert not standby.record(PROVIDER.address, beat(timestamp=NOW - 1, load=3))
    assert leader.last(PROVIDER.address) == beat(timestamp=NOW)
    assert standby.record(PROVIDER.address, beat(timestamp=NOW + 1, load=2))
    assert leader.last(PROVIDER.address) == beat(timestamp=NOW + 1, load=2)


def test_heartbeats_update_one_row_per_provider(stores: tuple[Store, Store]) -> None:
    book = StoreLivenessBook(stores[0])
    for i in range(50):
        assert book.record(PROVIDER.address, beat(timestamp=NOW + 5 * i, load=i % 4))
        assert book.record(OTHER.address, beat(OTHER, timestamp=NOW + 5 * i))
    assert rows(stores[0]) == 2
    assert len(book) == 2
    assert book.last(PROVIDER.address) == beat(timestamp=NOW + 245, load=1)


def test_heartbeats_survive_a_relayer_restart(new_db_url: Callable[[str], str]) -> None:
    url = new_db_url("relayer")
    first = Store(url)
    StoreLivenessBook(first).record(PROVIDER.address, beat())
    first.close()
    again = Store(url)
    try:
        assert StoreLivenessBook(again).last(PROVIDER.address) == beat()
    finally:
        again.close()


def test_while_the_database_is_down_heartbeats_are_held_in_memory(
    postgres: PostgresServer,
) -> None:
    url = postgres.new_database("outage")
    name = url.rsplit("/", 1)[1]
    store = Store(url)
    book = StoreLivenessBook(store)
    try:
        assert book.record(PROVIDER.address, beat(timestamp=NOW))
        postgres.sql(postgres.url("postgres"), f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        postgres.sql(
            postgres.url("postgres"),
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
        )
        assert book.record(PROVIDER.address, beat(timestamp=NOW + 15))
        assert book.record(OTHER.address, beat(OTHER, timestamp=NOW + 15))
        assert book.outage.down
        assert book.last(PROVIDER.address) == beat(timestamp=NOW + 15)
        assert set(book.snapshot()) == {PROVIDER.address, OTHER.address}
        postgres.sql(postgres.url("postgres"), f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        # Back: the database is written again and reads merge the newest of both.
        assert book.record(PROVIDER.address, beat(timestamp=NOW + 30))
        assert not book.outage.down
        assert store.saved_heartbeats().keys() == {PROVIDER.address}
        assert book.snapshot() == {
            PROVIDER.address: beat(timestamp=NOW + 30),
            OTHER.address: beat(OTHER, timestamp=NOW + 15),
        }
    finally:
        postgres.sql(postgres.url("postgres"), f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        store.close()
