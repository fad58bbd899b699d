"""The API's errors and the one handler that turns any error into its HTTP answer.

Routes raise; `answer` decides the status, headers and body, so every endpoint fails the same
way. The body is JSON ``{"detail": "<what went wrong and what to do>"}``, with ``"reason"``
added for a refused heartbeat; a request validation error keeps FastAPI's list of problems as
its detail. HEAD has no body, so there the message goes in header X-Depin-Error.

    ApiError subclasses            their own `status` (and `headers`, such as Retry-After)
    HeartbeatError                 by reason: 422 malformed, 400 chain / market / stale / future,
                                   403 signature / signer / unregistered, 409 replay
    ArtifactNotFound               404
    ArtifactTooLarge               413
    StoredArtifactCorrupted        500, X-Depin-Reason: corrupt (the relayer's copy is bad)
    ArtifactError (any other)      400 (malformed name, upload hash mismatch)
    RequestValidationError         422
    ClientDisconnect               400 (the body ended early)
    any other DepinError           500 with its message
    anything else                  500 naming the error class; the traceback goes to the log
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from marketplace.api.artifacts import StoredArtifactCorrupted
from marketplace.protocol.artifact_client import (
    REASON_HEADER,
    ArtifactError,
    ArtifactNotFound,
    ArtifactTooLarge,
)
from marketplace.protocol.errors import DepinError
from marketplace.protocol.heartbeat import HeartbeatError

__all__ = [
    "RETRY_AFTER",
    "ApiError",
    "BadRequest",
    "BodyTooLarge",
    "Conflict",
    "DatabaseUnavailable",
    "Forbidden",
    "MalformedBody",
    "NoChainConfigured",
    "NotFound",
    "Problem",
    "ProviderSourceUnavailable",
    "Unavailable",
    "answer",
    "install_error_handler",
    "problem_of",
]

#: Seconds a client is told to wait (Retry-After) when a dependency of the API is unavailable.
RETRY_AFTER: Final = 2
#: Header carrying the message of a failed HEAD request.
ERROR_HEADER: Final = "x-depin-error"


class ApiError(DepinError):
    """Root of the errors the API raises itself; `status` is the HTTP status it answers with."""

    status: ClassVar[int] = 500
    headers: ClassVar[Mapping[str, str]] = {}


class BadRequest(ApiError, ValueError):
    """The request names something wrong (a state, an address, a deployment)."""

    status = 400


class Forbidden(ApiError, PermissionError):
    """A signed message is not signed by whom it names."""

    status = 403


class NotFound(ApiError, LookupError):
    """Nothing is known under the name asked for."""

    status = 404


class Conflict(ApiError, ValueError):
    """The relayer holds a newer version of what was sent."""

    status = 409


class BodyTooLarge(ApiError, ValueError):
    """The request body is longer than the endpoint takes."""

    status = 413


class MalformedBody(ApiError, ValueError):
    """The request body does not parse as what the endpoint takes."""

    status = 422


class NoChainConfigured(ApiError, RuntimeError):
    """The endpoint checks signatures against a deployment, and none is configured."""

    status = 503


class Unavailable(ApiError, ConnectionError):
    """Something the API depends on cannot answer now; the client retries after a while."""

    status = 503
    headers: ClassVar[Mapping[str, str]] = {"retry-after": str(RETRY_AFTER)}


class ProviderSourceUnavailable(Unavailable):
    """The provider source cannot answer now (its database is down); the heartbeat gets 503
    with Retry-After, and the provider sends it again."""


class DatabaseUnavailable(Unavailable):
    """The relayer's database is unavailable; the read endpoints over it answer 503."""


_HEARTBEAT_STATUS: Final[Mapping[str, int]] = {
    "malformed": 422,
    "chain": 400,
    "market": 400,
    "stale": 400,
    "future": 400,
    "signature": 403,
    "signer": 403,
    "unregistered": 403,
    "replay": 409,
}


@dataclass(frozen=True, slots=True)
class Problem:
    """How the API answers one error."""

    status: int
    #: A sentence for people; a list of problems for a request validation error.
    detail: str | list[Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    #: More members of the JSON body.
    extra: Mapping[str, str] = field(default_factory=dict)


def problem_of(exc: Exception) -> Problem:
    """The answer to `exc`: the table in this module's docstring."""
    if isinstance(exc, ApiError):
        return Problem(exc.status, str(exc), exc.headers)
    if isinstance(exc, HeartbeatError):
        return Problem(
            _HEARTBEAT_STATUS.get(exc.reason, 400), str(exc), extra={"reason": exc.reason}
        )
    if isinstance(exc, ArtifactNotFound):
        return Problem(404, str(exc))
    if isinstance(exc, ArtifactTooLarge):
        return Problem(413, str(exc))
    if isinstance(exc, StoredArtifactCorrupted):
        return Problem(500, str(exc), {REASON_HEADER: "corrupt"})
    if isinstance(exc, ArtifactError):
        return Problem(400, str(exc))
    if isinstance(exc, RequestValidationError):
        return Problem(422, jsonable_encoder(exc.errors()))
    if isinstance(exc, ClientDisconnect):
        return Problem(400, "the client disconnected before the body was complete")
    if isinstance(exc, DepinError):
        return Problem(500, str(exc))
    return Problem(
        500,
        f"the relayer's API failed on an unexpected {type(exc).__name__}; its log has the "
        "traceback: report it to the relayer's operator",
    )


async def answer(request: Request, exc: Exception) -> Response:
    """The one exception handler of the app."""
    problem = problem_of(exc)
    if request.method == "HEAD":
        headers = {**problem.headers, ERROR_HEADER: _header_text(str(problem.detail))}
        return Response(status_code=problem.status, headers=headers)
    return JSONResponse(
        {"detail": problem.detail, **problem.extra},
        status_code=problem.status,
        headers=dict(problem.headers) or None,
    )


def install_error_handler(app: FastAPI) -> None:
    """Registers `answer` for every error it maps. Exception itself reaches Starlette's
    outermost middleware, which answers with it and then re-raises, so the server logs the
    traceback of an unexpected error; the others are answered where they are raised."""
    for kind in (DepinError, RequestValidationError, ClientDisconnect, Exception):
        app.add_exception_handler(kind, answer)


def _header_text(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:300]
