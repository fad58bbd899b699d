"""Which errors mean a dependency of the relayer is unavailable (retry later), as opposed to a
request it refuses (a bug or a misconfiguration: not retried).

The relayer loop and its API share these rules; each logs an outage once through
`marketplace.protocol.outage.Outage`.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from web3.exceptions import Web3Exception

from marketplace.protocol.errors import ChainError

__all__ = ["RPC_ERRORS", "database_unavailable", "reason", "safe_url"]

#: What the RPC going away raises: web3's errors, requests' (OSErrors), the SDK's ChainError.
RPC_ERRORS: tuple[type[BaseException], ...] = (ChainError, OSError, Web3Exception)


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached or used right now (locked, unreadable,
    its server restarting or gone), as opposed to a statement it refuses."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def reason(exc: BaseException) -> str:
    """One line for an outage log: database errors without their statement and parameters."""
    if isinstance(exc, DBAPIError):
        return f"{type(exc.orig).__name__}: {exc.orig}"
    return f"{type(exc).__name__}: {exc}"


def safe_url(url: str) -> str:
    """A database URL fit for a log line (password hidden)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL fails at connect time with its own message
        return url
