"""Client of the relayer's JSON API (jobs, result notices, providers, heartbeats): one base URL,
one timeout, one connection pool, and the two ways a call can fail turned into SDK errors whose
message says what to do.

- the relayer did not answer (refused connection, timeout, dropped connection):
  `RelayerUnreachable`, naming the URL and the setting that holds it;
- it answered, but not with what was asked (an error status, a body that is not JSON):
  `RelayerRefused`, carrying the status and the relayer's own message (`{"detail": ...}`).

Artifacts have their own client (`ArtifactClient`), which checks every hash; this one carries
everything else the requester SDK and the provider agent exchange with a relayer::

    with RelayerClient("http://127.0.0.1:8700", url_setting="DEPIN_REQUESTER_RELAYER_URL") as r:
        notices = r.get_json("/jobs/7/results", what="the results of job 7")["results"]
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel

from marketplace.protocol.artifact_client import RelayerUnreachable
from marketplace.protocol.errors import DepinError

__all__ = ["RelayerClient", "RelayerRefused", "RelayerUnreachable"]


class RelayerRefused(DepinError, RuntimeError):
    """The relayer answered, but with an error status or a body that is not the JSON asked for."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        #: The HTTP status of the answer (200 when only its body was unusable).
        self.status = status


class RelayerClient:
    """The relayer's JSON endpoints at `base_url`; close it (or use it as a context manager).

    `url_setting` names where the URL came from (such as ``DEPIN_PROVIDER_RELAYER_URL``), so an
    unreachable relayer's message says which setting to fix.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        url_setting: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url_setting = url_setting
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RelayerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- calls

    def get(self, path: str, **params: str | int) -> httpx.Response:
        """GET `path` with query `params`, whatever its status (RelayerUnreachable when the
        relayer does not answer)."""
        return self._send("GET", path, params=params or None)

    def post(self, path: str, body: BaseModel) -> httpx.Response:
        """POST `body` as JSON to `path`, whatever the status of the answer (RelayerUnreachable
        when the relayer does not answer)."""
        return self._send(
            "POST",
            path,
            content=body.model_dump_json(),
            headers={"content-type": "application/json"},
        )

    def get_json(self, path: str, *, what: str, **params: str | int) -> Any:
        """The JSON body of a 200 answer to GET `path`; RelayerRefused for any other answer.
        `what` names the resource in that error ("the results of job 7")."""
        response = self.get(path, **params)
        if response.status_code != 200:
            raise self.refused(response, what)
        try:
            return response.json()
        except ValueError:
            raise RelayerRefused(
                f"the relayer at {self.base_url} answered {what} with a body that is not JSON "
                f"({response.text[:200]!r}); {self._check_url()}",
                status=response.status_code,
            ) from None

    def refused(self, response: httpx.Response, what: str) -> RelayerRefused:
        """The error for an answer about `what` that was not the one expected."""
        status = response.status_code
        detail = _detail(response)
        shown = f": {detail}" if detail else ""
        if status >= 500 or status == 429:
            fix = "retry later, or check the relayer's log"
        elif status == 404:
            fix = self._check_url() + " serving this"
        else:
            fix = "check the request against the relayer's message"
        return RelayerRefused(
            f"the relayer at {self.base_url} answered {status} for {what}{shown}; {fix}",
            status=status,
        )

    # ---------------------------------------------------------------- plumbing

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        content: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return self._http.request(method, path, params=params, content=content, headers=headers)
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.TimeoutException):
                what = f"did not answer {method} {path} in time"
            else:
                what = f"is unreachable ({type(exc).__name__}: {exc})"
            raise RelayerUnreachable(
                f"the relayer at {self.base_url} {what}; start it (`depin relayer run`) or "
                f"{self._fix_url()}"
            ) from exc

    def _fix_url(self) -> str:
        where = f" ({self.url_setting})" if self.url_setting else ""
        return f"point the client at the right URL{where}"

    def _check_url(self) -> str:
        where = f" ({self.url_setting})" if self.url_setting else ""
        return f"check that the URL{where} is a depin relayer's API"


def _detail(response: httpx.Response) -> str:
    """The relayer's message: `detail` of a JSON error body, else the start of the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip()
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return response.text[:300].strip()
