"""The requester SDK's exceptions: one root, each also the matching builtin, each message naming
the fix. Everything raised before a transaction is one of these (or a protocol SDK error such as
`SpecError`, `ChainError`, `RelayerUnreachable`, `RelayerRefused`), and means no funds
moved."""

from __future__ import annotations

from marketplace.protocol.errors import DepinError

__all__ = [
    "InputError",
    "InsufficientFunds",
    "JobNotFound",
    "NotRequester",
    "RequesterError",
    "ResultRejected",
    "ResultUnavailable",
    "WaitTimeout",
    "WrongState",
]


class RequesterError(DepinError):
    """Root of the requester SDK's own errors."""


class InputError(RequesterError, ValueError):
    """A job's inputs, kind, model or parameters are unusable (nothing was uploaded or paid)."""


class InsufficientFunds(RequesterError, ValueError):
    """The wallet holds fewer tokens (or less ETH for gas) than the job needs."""


class JobNotFound(RequesterError, LookupError):
    """No job with this id exists on the chain."""


class NotRequester(RequesterError, PermissionError):
    """The job belongs to another wallet; only its requester may do this."""


class WrongState(RequesterError, ValueError):
    """The job's state does not allow this action now."""


class ResultUnavailable(RequesterError, LookupError):
    """No provider has announced a result of the job yet."""


class ResultRejected(RequesterError, ValueError):
    """Results were announced, but none decrypts and matches its provider's on-chain commitment."""


class WaitTimeout(RequesterError, TimeoutError):
    """The job did not reach the awaited state in time."""
