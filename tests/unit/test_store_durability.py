"""How durably each database commits: the chain index (rebuilt from the chain) without an fsync
per commit, the provider's ledger (salts, duties) fully, also when both share one file."""

from __future__ import annotations

from pathlib import Path

from marketplace.index.store import Store
from provider.ledger import Ledger

_NORMAL, _FULL = 1, 2


def test_the_index_skips_the_fsync_and_the_ledger_in_the_same_file_keeps_it(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'provider.sqlite3'}"
    store, ledger = Store(url), Ledger(url)
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == _NORMAL
        with ledger.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == _FULL
    finally:
        store.close()
        ledger.close()
