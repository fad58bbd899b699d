"""The artifact store on an S3-compatible object store (AWS S3, MinIO, Ceph RGW, ...).

Keys under the configured `s3://BUCKET/PREFIX`::

    PREFIX/ab/cdef...                       artifact abcdef...
    PREFIX/quarantine/abcdef....<ns>        stored copies that failed their hash check

Guarantees, the same as the filesystem store's (marketplace.api.artifacts):

- An object appears under its hash only with verified bytes: an upload streams to a local temp
  file in `tmp_dir` while it is hashed and its size capped, and only after the hash matched the
  name is it PUT under that key. A PUT is atomic in S3 (the key shows the old object or the
  whole new one, never a part); over plain HTTP every request also carries the sha256 of its
  payload, which the server checks. A crash mid-upload leaves a local temp file (removed at the
  next start once an hour old) and at worst an incomplete multipart upload, which is never
  visible under a key (a bucket lifecycle rule "abort incomplete multipart uploads" reclaims it).
- Reads verify: `open_verified` streams the object into an unnamed local temp file while it is
  hashed, and returns that file, so what the caller reads is exactly what was verified and an
  artifact is never held in memory. A copy that does not match its name is copied under
  `quarantine/` (on the condition that it is still the object that was read, where the server
  honours If-Match) and removed, and StoredArtifactCorrupted is raised.
- Size limits as the filesystem store: `PendingArtifact` refuses bytes past `max_bytes`.
- Stats: counted by one listing of the prefix at start, then kept by this process; another
  process writing to the same prefix is seen at the next start.

An S3 request that fails for a network or server reason raises ArtifactStoreUnavailable (503
with Retry-After; the outage is logged once), one refused for credentials or a missing bucket
ArtifactStoreMisconfigured (500, the message says which setting to check).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, ClassVar, Final
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import MinioException, S3Error

from marketplace.api.artifacts import (
    ArtifactError,
    ArtifactStore,
    StoredArtifactCorrupted,
    StoreStats,
    corrupt_error,
    not_found,
)
from marketplace.api.errors import ApiError, Unavailable
from marketplace.protocol.artifact_backend import ArtifactBackendSettings, S3Location
from marketplace.protocol.artifact_client import check_sha256
from marketplace.protocol.outage import Outage

__all__ = ["ArtifactStoreMisconfigured", "ArtifactStoreUnavailable", "S3ArtifactStore"]

log = logging.getLogger(__name__)

_CHUNK: Final = 1024 * 1024
#: Uploads larger than this go in parts of this size, one part in memory at a time.
PART_SIZE: Final = 16 * 1024 * 1024
_AWS: Final = "https://s3.amazonaws.com"
_REGION: Final = "us-east-1"
_NAME: Final = re.compile(r"[0-9a-f]{2}/[0-9a-f]{62}")
#: Refusals that retrying will not cure: the settings are wrong.
_CONFIG_CODES: Final = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NoSuchBucket",
        "AuthorizationHeaderMalformed",
        "InvalidBucketName",
    }
)
_GONE: Final = frozenset({"NoSuchKey", "PreconditionFailed"})


class ArtifactStoreUnavailable(Unavailable):
    """The S3 server cannot answer now; the request gets 503 with Retry-After."""


class ArtifactStoreMisconfigured(ApiError, PermissionError):
    """The S3 server refuses the relayer's requests: its credentials or bucket are wrong."""

    status: ClassVar[int] = 500


class S3ArtifactStore(ArtifactStore):
    """Content-addressed artifacts in `location` through `client`, each at most `max_bytes`.

    Raises ArtifactError when the bucket is missing and ArtifactStoreUnavailable when the server
    cannot be reached: a relayer does not start on a store it cannot use.
    """

    def __init__(
        self,
        client: Minio,
        location: S3Location,
        *,
        tmp_dir: Path,
        max_bytes: int,
        endpoint: str = _AWS,
        part_size: int = PART_SIZE,
    ) -> None:
        super().__init__(tmp_dir, max_bytes=max_bytes)
        self._client = client
        self.location = location
        self.endpoint = endpoint
        self._part_size = part_size
        self._lock = threading.Lock()
        # Uploads, quarantines and deletes of one artifact are serialized, so the counts see
        # each change once; artifacts in different stripes go on in parallel.
        self._stripes = [threading.Lock() for _ in range(256)]
        self._outage = Outage(f"artifact store {self.describe()}", log, max_delay=60.0)
        with self._talking("check the bucket"):
            found = client.bucket_exists(location.bucket)
        if not found:
            raise ArtifactError(
                f"the bucket {location.bucket} does not exist at {endpoint}; create it (for "
                "example `aws s3 mb s3://BUCKET` or `mc mb ALIAS/BUCKET`) or fix the artifacts "
                "URL (DEPIN_RELAYER_ARTIFACTS_URL)"
            )
        self._count, self._bytes, self._quarantined = self._scan()

    @classmethod
    def from_settings(
        cls,
        location: S3Location,
        backend: ArtifactBackendSettings,
        *,
        tmp_dir: Path,
        max_bytes: int,
        part_size: int = PART_SIZE,
    ) -> S3ArtifactStore:
        """The store `backend` describes (`artifacts_url` = `location`)."""
        endpoint = backend.s3_endpoint_url or _AWS
        parts = urlsplit(endpoint)
        secret = backend.s3_secret_key
        client = Minio(
            parts.netloc,
            access_key=backend.s3_access_key,
            secret_key=None if secret is None else secret.get_secret_value(),
            secure=parts.scheme == "https",
            # Named, so the client never asks the server where the bucket lives.
            region=backend.s3_region or _REGION,
            http_client=_http_client(),
        )
        return cls(
            client,
            location,
            tmp_dir=tmp_dir,
            max_bytes=max_bytes,
            endpoint=endpoint,
            part_size=part_size,
        )

    def describe(self) -> str:
        return f"{self.location} at {self.endpoint}"

    # ---------------------------------------------------------------- writing

    def install(self, tmp: Path, sha256: str, size: int) -> bool:
        key = self._key(sha256)
        with self._stripe(sha256):
            old_size = self._stat_size(key)
            with tmp.open("rb") as f, self._talking(f"store artifact {sha256}"):
                self._client.put_object(
                    self.location.bucket,
                    key,
                    f,
                    size,
                    part_size=self._part_size,
                    # One part in memory at a time, whatever the artifact's size.
                    num_parallel_uploads=1,
                )
            with self._lock:
                if old_size is None:
                    self._count += 1
                    self._bytes += size
                else:
                    self._bytes += size - old_size
        return old_size is None

    # ---------------------------------------------------------------- reading

    def exists(self, sha256: str) -> bool:
        return self._stat_size(self._key(sha256)) is not None

    def size(self, sha256: str) -> int:
        size = self._stat_size(self._key(sha256))
        if size is None:
            raise not_found(sha256)
        return size

    def open_verified(self, sha256: str) -> IO[bytes]:
        key = self._key(sha256)
        # Unnamed (O_TMPFILE where the filesystem has it): nothing is left behind by a crash.
        # Returned open to the caller, who closes it.
        f = tempfile.TemporaryFile(dir=self.tmp_dir)  # noqa: SIM115
        try:
            h = hashlib.sha256()
            size = 0
            with self._talking(f"read artifact {sha256}"):
                try:
                    response = self._client.get_object(self.location.bucket, key)
                except S3Error as exc:
                    if exc.code == "NoSuchKey":
                        raise not_found(sha256) from None
                    raise
                try:
                    etag = response.headers.get("etag")
                    for chunk in response.stream(_CHUNK):
                        h.update(chunk)
                        f.write(chunk)
                        size += len(chunk)
                finally:
                    response.close()
                    response.release_conn()
            if h.hexdigest() != sha256:
                raise self._quarantine_corrupt(sha256, h.hexdigest(), etag, size)
            f.flush()
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return f

    def _quarantine_corrupt(
        self, sha256: str, actual: str, etag: str | None, size: int
    ) -> StoredArtifactCorrupted:
        key = self._key(sha256)
        dest = self.location.key(f"quarantine/{sha256}.{time.time_ns()}")
        bucket = self.location.bucket
        with self._stripe(sha256), self._talking(f"quarantine artifact {sha256}"):
            # Only the object that was read: an upload that replaced it meanwhile stays.
            source = CopySource(bucket, key, match_etag=etag) if etag else CopySource(bucket, key)
            try:
                self._client.copy_object(bucket, dest, source)
            except S3Error as exc:
                if exc.code not in _GONE:
                    raise
                where = "was already moved or replaced"
            else:
                self._client.remove_object(bucket, key)
                with self._lock:
                    self._count -= 1
                    self._bytes -= size
                    self._quarantined += 1
                where = f"was moved to s3://{bucket}/{dest}"
        return corrupt_error(sha256, actual, where)

    # ---------------------------------------------------------------- admin

    def delete(self, sha256: str) -> bool:
        key = self._key(sha256)
        with self._stripe(sha256):
            size = self._stat_size(key)
            if size is None:
                return False
            with self._talking(f"delete artifact {sha256}"):
                self._client.remove_object(self.location.bucket, key)
            with self._lock:
                self._count -= 1
                self._bytes -= size
        return True

    def stats(self) -> StoreStats:
        with self._lock:
            return StoreStats(self._count, self._bytes, self._quarantined)

    # ---------------------------------------------------------------- internals

    def _key(self, sha256: str) -> str:
        check_sha256(sha256)
        return self.location.key(f"{sha256[:2]}/{sha256[2:]}")

    def _stripe(self, sha256: str) -> threading.Lock:
        return self._stripes[int(sha256[:2], 16)]

    def _stat_size(self, key: str) -> int | None:
        with self._talking(f"look up {key}"):
            try:
                size = self._client.stat_object(self.location.bucket, key).size
            except S3Error as exc:
                if exc.code == "NoSuchKey":
                    return None
                raise
        return size if size is not None else 0

    def _scan(self) -> tuple[int, int, int]:
        base = self.location.key("")
        count = total = quarantined = 0
        with self._talking("list the artifacts"):
            for obj in self._client.list_objects(self.location.bucket, prefix=base, recursive=True):
                name = (obj.object_name or "")[len(base) :]
                if name.startswith("quarantine/"):
                    quarantined += 1
                elif _NAME.fullmatch(name):
                    count += 1
                    total += obj.size or 0
        return count, total, quarantined

    @contextmanager
    def _talking(self, what: str) -> Iterator[None]:
        """Turns the client's failures into the API's errors and logs an outage once."""
        try:
            yield
        except S3Error as exc:
            if exc.code in _CONFIG_CODES:
                raise ArtifactStoreMisconfigured(
                    f"{self.describe()} refused to {what}: {exc.code} ({exc.message}); check the "
                    "bucket in the artifacts URL and the S3 access key and secret "
                    "(DEPIN_RELAYER_ARTIFACTS_URL, DEPIN_RELAYER_S3_ACCESS_KEY, "
                    "DEPIN_RELAYER_S3_SECRET_KEY)"
                ) from exc
            raise self._unavailable(what, f"{exc.code} ({exc.message})") from exc
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            raise self._unavailable(what, str(exc)) from exc
        with self._lock:
            if self._outage.down:
                self._outage.ok()

    def _unavailable(self, what: str, why: str) -> ArtifactStoreUnavailable:
        with self._lock:
            self._outage.failed(why)
        return ArtifactStoreUnavailable(
            f"the artifact store {self.describe()} could not {what}: {why}; retry shortly (the "
            "relayer's operator checks the S3 server and DEPIN_RELAYER_S3_ENDPOINT_URL)"
        )


def _http_client() -> urllib3.PoolManager:
    """Connections with bounded waits: a stalled S3 server fails a request in a minute instead
    of holding the API's worker thread for the client's default five. SSL_CERT_FILE names the
    CA bundle of a server whose certificate a private CA signed."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5.0, read=60.0),
        maxsize=16,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
    )
