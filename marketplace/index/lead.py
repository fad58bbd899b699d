"""Which of several relayers on one database leads: a PostgreSQL session-level advisory lock.

`LeaderLock.hold()` takes the lock (`pg_try_advisory_lock`, never waiting) on a connection of
its own and keeps that connection; later calls check the connection still answers. The lock
lives as long as that database session: a leader that dies (even by SIGKILL) or loses its
connection loses it at once, and the next `hold()` of a standby takes it.

On SQLite (and any other database) there is no lock: `hold()` always answers True and the
relayer runs alone, as a SQLite file cannot be shared between hosts anyway. Two relayers started
on one SQLite file would both lead; the contract still refuses a second assignment of a job.
"""

from __future__ import annotations

import contextlib
import hashlib

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

__all__ = ["LeaderLock", "lock_key"]


def lock_key(chain_id: int, market: str) -> int:
    """The advisory lock key of the relayers of one deployment: a signed 64-bit number."""
    digest = hashlib.sha256(f"depin-relayer:{chain_id}:{market.lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class LeaderLock:
    """The lead among the relayers sharing the database of `engine` (see the module)."""

    def __init__(self, engine: Engine, key: int) -> None:
        self.engine = engine
        self.key = key
        #: Whether relayers can share this database and so must take turns.
        self.shared = engine.dialect.name == "postgresql"
        self._conn: Connection | None = None

    def hold(self) -> bool:
        """Takes the lock, or checks it is still held; True while this process leads. Raises
        the database's error when it cannot be reached (the lock is then not held)."""
        if not self.shared:
            return True
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except DBAPIError:
                # The session is gone and the server released its lock with it.
                self._drop()
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            taken = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar()
            )
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        if not taken:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        """Gives the lead up (a standby takes it on its next try)."""
        if self._conn is None:
            return
        with contextlib.suppress(DBAPIError):  # a lost session holds nothing
            self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Never back into the pool: a pooled session would keep the lock.
            conn.invalidate()
            conn.close()
