"""Client of the relayer's content-addressed artifact store, and the errors both sides share.

An artifact is named by the sha256 of its bytes, written as 64 lowercase hex characters without
a 0x prefix (`JobSpec.spec_hash().hex()`, the entries of `JobSpec.inputs`). The relayer serves
them over HTTP::

    PUT  /artifacts/{sha256}   body = the bytes; 201 stored, 200 already present,
                               400 hash mismatch or malformed name, 413 above the size limit
    GET  /artifacts/{sha256}   200 the bytes, 404 unknown, 500 stored copy failed its check
                               (then with header X-Depin-Reason: corrupt, and quarantined)
    HEAD /artifacts/{sha256}   as GET, without the body

Every consumer verifies what it receives: `get` and `download` hash the bytes that came back and
refuse them when they do not match the name, whatever the server said. Errors from the server
carry its message (JSON `{"detail": ...}`), so the fix it names reaches the user.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final

import httpx

from marketplace.protocol.errors import DepinError

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = [
    "DEFAULT_MAX_ARTIFACT_BYTES",
    "REASON_HEADER",
    "ArtifactClient",
    "ArtifactCorrupted",
    "ArtifactError",
    "ArtifactNotFound",
    "ArtifactTooLarge",
    "RelayerUnreachable",
    "check_sha256",
    "sha256_hex",
]

#: The relayer's default artifact size limit, and the client's default download limit.
DEFAULT_MAX_ARTIFACT_BYTES: Final = 64 * 1024 * 1024

#: Response header naming why an artifact request failed, where the status alone does not.
REASON_HEADER: Final = "x-depin-reason"

_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
_HASH_FIX: Final = "64 lowercase hex characters (a sha256 digest, no 0x prefix)"
_CHUNK: Final = 1024 * 1024


class ArtifactError(DepinError, ValueError):
    """An artifact is unusable: malformed name, hash mismatch, or refused by the store."""


class ArtifactTooLarge(ArtifactError):
    """An artifact exceeds the size limit of the store (or of the download)."""


class ArtifactCorrupted(ArtifactError):
    """Stored or received bytes do not hash to the artifact's name."""


class ArtifactNotFound(DepinError, LookupError):
    """No artifact with this hash is stored."""


class RelayerUnreachable(DepinError, ConnectionError):
    """The relayer's HTTP API did not answer."""


def sha256_hex(data: bytes) -> str:
    """The artifact name of `data`: its sha256 as 64 lowercase hex characters."""
    return hashlib.sha256(data).hexdigest()


def check_sha256(value: object) -> str:
    """`value` if it is a well-formed artifact name, else ArtifactError saying how to write one."""
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 70 else repr(value)[:67] + "..."
        hint = ""
        if isinstance(value, str):
            if value[:2].lower() == "0x":
                hint = "; drop the 0x prefix"
            elif _SHA256_HEX.fullmatch(value.lower()):
                hint = "; write it in lowercase"
        raise ArtifactError(f"an artifact hash is {_HASH_FIX}, got {shown}{hint}")
    return value


class ArtifactClient:
    """Uploads and downloads artifacts at one relayer, verifying every hash.

    `base_url` is the relayer's API root, such as ``http://127.0.0.1:8545``. The client holds a
    connection pool: close it (or use it as a context manager) when done.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        max_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: Largest artifact `get` and `download` accept; a bigger answer is cut off.
        self.max_bytes = max_bytes
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ArtifactClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- operations

    def put(self, data: bytes) -> str:
        """Stores `data`; returns its sha256 hex. Storing the same bytes again is a no-op."""
        sha = sha256_hex(data)
        response = self._request(
            "PUT",
            sha,
            content=data,
            headers={"content-type": "application/octet-stream"},
        )
        if response.status_code in (200, 201):
            return sha
        raise self._error(response, sha, len(data))

    def exists(self, sha256: str) -> bool:
        """Whether the relayer holds an intact copy of `sha256`."""
        response = self._request("HEAD", check_sha256(sha256))
        if response.status_code == 200:
            return True
        if response.status_code == 404 or _corrupt(response):
            return False  # a corrupt copy was quarantined: upload the artifact again
        raise self._error(response, sha256)

    def get(self, sha256: str) -> bytes:
        """The bytes of artifact `sha256`, checked to hash to it."""
        check_sha256(sha256)
        h = hashlib.sha256()
        parts: list[bytes] = []
        for chunk in self._stream(sha256):
            h.update(chunk)
            parts.append(chunk)
        self._verify(sha256, h)
        return b"".join(parts)

    def download(self, sha256: str, dest: Path) -> Path:
        """Streams artifact `sha256` into file `dest` (atomically, verified); returns `dest`.

        Nothing is left at `dest` unless the whole artifact arrived and matched its hash.
        """
        check_sha256(sha256)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for chunk in self._stream(sha256):
                    h.update(chunk)
                    out.write(chunk)
            self._verify(sha256, h)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest

    # ---------------------------------------------------------------- plumbing

    def _url(self, sha256: str) -> str:
        return f"{self.base_url}/artifacts/{sha256}"

    def _request(
        self,
        method: str,
        sha256: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return self._http.request(
                method, f"/artifacts/{sha256}", content=content, headers=headers
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc, len(content) if content is not None else None) from exc

    def _stream(self, sha256: str) -> Iterator[bytes]:
        """The body of GET /artifacts/{sha256} chunk by chunk, cut off at `max_bytes`."""
        try:
            with self._http.stream("GET", f"/artifacts/{sha256}") as response:
                if response.status_code != 200:
                    response.read()
                    raise self._error(response, sha256)
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_big(sha256, int(declared))
                received = 0
                for chunk in response.iter_bytes(_CHUNK):
                    received += len(chunk)
                    if received > self.max_bytes:
                        raise self._too_big(sha256, received)
                    yield chunk
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _too_big(self, sha256: str, size: int) -> ArtifactTooLarge:
        return ArtifactTooLarge(
            f"artifact {sha256} from the relayer at {self.base_url} is {size}+ bytes, above this "
            f"client's limit of {self.max_bytes}; raise ArtifactClient(max_bytes=...) if you "
            "expect it"
        )

    def _verify(self, sha256: str, h: _Hash) -> None:
        got = h.hexdigest()
        if got != sha256:
            raise ArtifactCorrupted(
                f"the relayer at {self.base_url} sent bytes with sha256 {got} for artifact "
                f"{sha256}; they were discarded. The relayer's copy or the connection is "
                "corrupt: retry, fetch it from another relayer, or ask its operator to re-upload"
            )

    def _unreachable(self, exc: httpx.TransportError, sent: int | None = None) -> DepinError:
        if isinstance(exc, httpx.TimeoutException):
            what = "did not answer in time"
        else:
            what = f"is unreachable ({type(exc).__name__}: {exc})"
        hint = "start it (`depin relayer run`) or point the client at the right URL"
        if sent is not None and not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            # The server may answer 413 and close before a large body is fully sent.
            what = f"closed the connection during a {sent}-byte upload ({type(exc).__name__})"
            hint = (
                "the artifact may be above the relayer's size limit (DEPIN_API_MAX_ARTIFACT_BYTES"
                " on the relayer); split it, or retry if the relayer restarted"
            )
        return RelayerUnreachable(f"the relayer at {self.base_url} {what}; {hint}")

    def _error(self, response: httpx.Response, sha256: str, size: int | None = None) -> DepinError:
        detail = _detail(response)
        where = f"{response.request.method} {self._url(sha256)}"
        status = response.status_code
        if status == 404:
            return ArtifactNotFound(
                f"the relayer at {self.base_url} has no artifact {sha256}; upload it first "
                "(ArtifactClient.put) or check the hash"
            )
        if status == 413:
            sent = f" ({size} bytes)" if size is not None else ""
            return ArtifactTooLarge(
                f"the relayer at {self.base_url} refused the artifact{sent} as too large: "
                f"{detail or 'above its size limit'}"
            )
        if _corrupt(response):
            return ArtifactCorrupted(f"the relayer at {self.base_url}: {detail}")
        if 400 <= status < 500:
            return ArtifactError(f"{where} was refused ({status}): {detail or response.text}")
        return ArtifactError(
            f"{where} failed on the relayer ({status}): {detail or response.reason_phrase}; "
            "retry later or check the relayer's log"
        )


def _corrupt(response: httpx.Response) -> bool:
    return bool(response.headers.get(REASON_HEADER) == "corrupt")


def _detail(response: httpx.Response) -> str:
    """The server's message: `detail` of a JSON error body, else the text (short)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500].strip()
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return response.text[:500].strip()
