"""Leader and standby: several relayer processes on one PostgreSQL database, one of them leading.

Only the leader follows the chain into the index, matches, assigns and keeps; a standby serves
its HTTP API from the shared index (which the leader writes) and tries to take the lead at every
cycle. The lead is a session-level advisory lock (`marketplace.index.lead`): it goes with the
leader's database session, so a leader killed or cut off from the database frees it at once and
a standby leads from its next cycle (`poll_interval` later at most).

Nothing is assigned twice across a change of leader: the contract assigns only Open jobs and
skips the others (BatchItemSkipped), so an assignment the old leader sent just before it died
makes the new leader's duplicate a skipped item, and the keeper's calls are idempotent the same
way. The lock spares the chain those duplicates and keeps one writer on the index.

On SQLite the lock is a no-op: the relayer leads alone, as it always did.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from marketplace.index.lead import LeaderLock, lock_key
from marketplace.index.store import Store
from marketplace.protocol.deployment import Deployment

__all__ = ["Leadership"]

log = logging.getLogger(__name__)


class Leadership:
    """Whether this relayer leads among those on its store's database; `on_change(leading)` is
    called on each change (the first answer included) where relayers can share it."""

    def __init__(
        self,
        store: Store,
        deployment: Deployment,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.lock = LeaderLock(store.engine, lock_key(deployment.chain_id, deployment.market))
        #: Who this relayer is, in log lines.
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.on_change = on_change
        #: None before the first answer.
        self.leading: bool | None = None

    @property
    def shared(self) -> bool:
        """Whether other relayers can share the database (PostgreSQL)."""
        return self.lock.shared

    def check(self) -> bool:
        """Takes or keeps the lead; True while this relayer leads. A database error propagates
        (the relayer's outage handling), and the lead counts as lost until the next check."""
        try:
            leading = self.lock.hold()
        except Exception:
            if self.leading:
                self._set(False)
            raise
        self._set(leading)
        return leading

    def release(self) -> None:
        """Hands the lead over (on shutdown: a standby takes it without waiting)."""
        self.lock.release()
        if self.leading:
            self._set(False)

    def _set(self, leading: bool) -> None:
        if leading == self.leading:
            return
        first = self.leading is None
        self.leading = leading
        if not self.shared:
            return  # alone on its database: it always leads, nothing to say
        if leading:
            log.warning("relayer %s leads: it follows the chain, matches and keeps", self.name)
        elif first:
            log.warning("relayer %s stands by: another relayer leads; serving reads", self.name)
        else:
            log.warning("relayer %s lost the lead: standing by, serving reads", self.name)
        if self.on_change is not None:
            self.on_change(leading)
