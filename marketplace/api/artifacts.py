"""The relayer's artifact store: content-addressed, verified on write and on read.

`ArtifactStore` is the interface the API uses; `open_store` builds the configured backend:

- `FileArtifactStore` (the default): files on a local filesystem, described below;
- `S3ArtifactStore` (marketplace.api.artifacts_s3): any S3-compatible object store, chosen by an
  s3:// `artifacts_url` (marketplace.protocol.artifact_backend), with the same guarantees.

Both take uploads the same way (`PendingArtifact`): bytes stream to a local temp file in
`tmp_dir` while their sha256 and size are counted, the size limit is enforced as they arrive,
and only once the hash matches the name does `install` make them visible under it. Both read
the same way: `open_verified` hashes the whole stored copy before returning it, and a copy that
does not match its name is moved to quarantine and reported as StoredArtifactCorrupted, so the
next upload of the true bytes restores it.

Filesystem layout under `root`::

    ab/cdef...                 artifact abcdef... (first two hex characters name the directory)
    tmp/                       uploads in progress; each is renamed into place when complete
    quarantine/                stored copies that failed their hash check, kept for inspection

Writes are atomic: bytes go to a temp file in `tmp/` (same filesystem), are fsynced, checked
against the expected hash, and moved into place with `os.replace`; a crash leaves at worst a
stale temp file (removed at the next start once an hour old), never a partial artifact. Storing
bytes that are already present is a no-op for the caller and rewrites the same content, which
also repairs a copy that had rotted on disk.

Verifying costs one read of the stored copy per request; the size limit (64 MiB by default)
keeps that bounded.

Thread-safe: the HTTP app runs store calls in worker threads.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from marketplace.protocol.artifact_backend import ArtifactBackendSettings
from marketplace.protocol.artifact_client import (
    DEFAULT_MAX_ARTIFACT_BYTES,
    ArtifactCorrupted,
    ArtifactError,
    ArtifactNotFound,
    ArtifactTooLarge,
    check_sha256,
)

__all__ = [
    "ArtifactCorrupted",
    "ArtifactError",
    "ArtifactNotFound",
    "ArtifactStore",
    "ArtifactTooLarge",
    "FileArtifactStore",
    "PendingArtifact",
    "StoreStats",
    "StoredArtifactCorrupted",
    "corrupt_error",
    "not_found",
    "open_store",
]

_CHUNK: Final = 1024 * 1024
#: Temp files older than this at start-up belong to a crashed upload and are removed.
_STALE_TMP_SECONDS: Final = 3600


class StoredArtifactCorrupted(ArtifactCorrupted):
    """The stored copy of an artifact failed its hash check on read and was quarantined: the
    relayer's fault, where a plain ArtifactCorrupted is bytes a client sent under a wrong name."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What the store holds, for metrics."""

    artifacts: int
    bytes: int
    quarantined: int


class ArtifactStore(ABC):
    """Content-addressed artifacts, each at most `max_bytes` long; uploads stage in `tmp_dir`.

    A backend implements `install`, `exists`, `size`, `open_verified`, `delete`, `stats` and
    `describe`; writing through `begin`/`put` and reading through `get`/`stream` are shared.
    """

    def __init__(self, tmp_dir: Path, *, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ArtifactError(f"max_bytes must be at least 1, got {max_bytes}")
        self.max_bytes = max_bytes
        self.tmp_dir = Path(tmp_dir)
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(
                f"cannot create the artifact upload directory {self.tmp_dir}: {exc}; "
                "choose a writable directory (DEPIN_API_ARTIFACT_ROOT)"
            ) from exc
        self._remove_stale_temps()

    # ---------------------------------------------------------------- writing

    def put(self, data: bytes, expected_sha256: str | None = None) -> str:
        """Stores `data`; returns its sha256 hex. Refuses it when `expected_sha256` differs."""
        with self.begin(expected_sha256) as pending:
            pending.write(data)
            return pending.commit()

    def begin(self, expected_sha256: str | None = None) -> PendingArtifact:
        """Starts a streamed upload: `write` chunks, then `commit`; closing without it aborts."""
        if expected_sha256 is not None:
            check_sha256(expected_sha256)
        return PendingArtifact(self, expected_sha256)

    @abstractmethod
    def install(self, tmp: Path, sha256: str, size: int) -> bool:
        """Makes verified temp file `tmp` the artifact `sha256`; True if it was not stored
        before. Used by PendingArtifact; `tmp` lies in `tmp_dir` and hashes to `sha256`."""

    # ---------------------------------------------------------------- reading

    @abstractmethod
    def exists(self, sha256: str) -> bool:
        """Whether `sha256` is stored (without verifying its content)."""

    @abstractmethod
    def size(self, sha256: str) -> int:
        """The stored size of `sha256` in bytes; ArtifactNotFound if absent."""

    @abstractmethod
    def open_verified(self, sha256: str) -> IO[bytes]:
        """An open binary file of artifact `sha256`, verified and positioned at the start; a
        real file (`fileno` works). The caller closes it."""

    def get(self, sha256: str) -> bytes:
        """The bytes of artifact `sha256`, verified against its hash."""
        with self.open_verified(sha256) as f:
            return f.read()

    def stream(self, sha256: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        """Verified chunks of artifact `sha256` (verified before the first chunk is yielded)."""
        f = self.open_verified(sha256)
        with f:
            while chunk := f.read(chunk_size):
                yield chunk

    # ---------------------------------------------------------------- admin

    @abstractmethod
    def delete(self, sha256: str) -> bool:
        """Removes artifact `sha256`; True if it was stored. Not exposed over HTTP."""

    @abstractmethod
    def stats(self) -> StoreStats:
        """What the store holds, for metrics."""

    @abstractmethod
    def describe(self) -> str:
        """Where the artifacts live, for log lines and messages."""

    def _remove_stale_temps(self) -> None:
        cutoff = time.time() - _STALE_TMP_SECONDS
        for f in self.tmp_dir.iterdir():
            try:
                if f.stat().st_mtime < cutoff:
                    f.unlink()
            except FileNotFoundError:
                pass


class FileArtifactStore(ArtifactStore):
    """Content-addressed artifacts under directory `root`, each at most `max_bytes` long."""

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES) -> None:
        self.root = Path(root)
        super().__init__(self.root / "tmp", max_bytes=max_bytes)
        self._quarantine = self.root / "quarantine"
        try:
            self._quarantine.mkdir(exist_ok=True)
        except OSError as exc:
            raise ArtifactError(
                f"cannot create the artifact store at {self.root}: {exc}; "
                "choose a writable directory (DEPIN_API_ARTIFACT_ROOT)"
            ) from exc
        self._lock = threading.Lock()
        self._count, self._bytes = self._scan()
        self._quarantined = sum(1 for _ in self._quarantine.iterdir())

    def describe(self) -> str:
        return str(self.root)

    # ---------------------------------------------------------------- writing

    def install(self, tmp: Path, sha256: str, size: int) -> bool:
        target = self.path(sha256)
        target.parent.mkdir(exist_ok=True)
        with self._lock:
            try:
                old_size: int | None = target.stat().st_size
            except FileNotFoundError:
                old_size = None
            os.replace(tmp, target)
            _fsync_dir(target.parent)
            if old_size is None:
                self._count += 1
                self._bytes += size
            else:
                self._bytes += size - old_size
        return old_size is None

    # ---------------------------------------------------------------- reading

    def path(self, sha256: str) -> Path:
        """Where artifact `sha256` lives (whether or not it is stored). Unverified."""
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:]

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            raise not_found(sha256) from None

    def open_verified(self, sha256: str) -> IO[bytes]:
        """See `ArtifactStore.open_verified`. Reading goes through the same open file that was
        verified, so a concurrent rewrite of the path cannot swap the content under the reader.
        """
        path = self.path(sha256)
        try:
            f = path.open("rb")
        except FileNotFoundError:
            raise not_found(sha256) from None
        try:
            h = hashlib.sha256()
            while chunk := f.read(_CHUNK):
                h.update(chunk)
            if h.hexdigest() != sha256:
                raise self._quarantine_corrupt(sha256, h.hexdigest())
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return f

    def _quarantine_corrupt(self, sha256: str, actual: str) -> StoredArtifactCorrupted:
        path = self.path(sha256)
        dest = self._quarantine / f"{sha256}.{time.time_ns()}"
        with self._lock:
            try:
                size = path.stat().st_size
                os.replace(path, dest)
            except FileNotFoundError:
                # Another reader quarantined it first, or an upload replaced it meanwhile.
                where = "was already moved"
            else:
                self._count -= 1
                self._bytes -= size
                self._quarantined += 1
                where = f"was moved to {dest}"
        return corrupt_error(sha256, actual, where)

    # ---------------------------------------------------------------- admin

    def delete(self, sha256: str) -> bool:
        path = self.path(sha256)
        with self._lock:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return False
            self._count -= 1
            self._bytes -= size
        return True

    def stats(self) -> StoreStats:
        with self._lock:
            return StoreStats(self._count, self._bytes, self._quarantined)

    def _scan(self) -> tuple[int, int]:
        count = total = 0
        for sub in self.root.iterdir():
            if len(sub.name) != 2 or not sub.is_dir():
                continue
            for f in sub.iterdir():
                if len(f.name) == 62 and f.is_file():
                    count += 1
                    total += f.stat().st_size
        return count, total


class PendingArtifact:
    """An upload in progress: a temp file, its running hash and size. Use as a context manager.

    `write` raises ArtifactTooLarge as soon as the bytes exceed the store's limit; `commit`
    checks the hash, installs the file and returns the sha256. Leaving the `with` block without
    a commit (or after an error) deletes the temp file.
    """

    def __init__(self, store: ArtifactStore, expected_sha256: str | None) -> None:
        self._store = store
        self.expected_sha256 = expected_sha256
        self.size = 0
        #: After `commit`: whether the artifact was new (False: it was already stored).
        self.created = False
        self._hash = hashlib.sha256()
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=store.tmp_dir)
        self._tmp_path = Path(name)
        self._file: io.BufferedWriter | None = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            raise ArtifactError("this upload is already committed or aborted; start a new one")
        self.size += len(chunk)
        if self.size > self._store.max_bytes:
            self.abort()
            raise ArtifactTooLarge(
                f"the artifact exceeds the store's limit of {self._store.max_bytes} bytes; "
                "split it into smaller artifacts or raise DEPIN_API_MAX_ARTIFACT_BYTES on the "
                "relayer"
            )
        self._hash.update(chunk)
        self._file.write(chunk)

    def commit(self) -> str:
        """Verifies and installs the upload; returns its sha256 hex."""
        if self._file is None:
            raise ArtifactError("this upload is already committed or aborted; start a new one")
        sha256 = self._hash.hexdigest()
        if self.expected_sha256 is not None and sha256 != self.expected_sha256:
            self.abort()
            raise ArtifactCorrupted(
                f"the uploaded {self.size} bytes hash to {sha256}, not {self.expected_sha256}; "
                "name the artifact by the sha256 of exactly the bytes sent"
            )
        f, self._file = self._file, None
        try:
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        try:
            self.created = self._store.install(self._tmp_path, sha256, self.size)
        finally:
            # The filesystem store moved it into place; a store that copies it elsewhere (S3)
            # leaves it here, as does a failed install.
            self._tmp_path.unlink(missing_ok=True)
        return sha256

    def abort(self) -> None:
        """Discards the upload (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp_path.unlink(missing_ok=True)

    def close(self) -> None:
        """Aborts the upload unless it was committed (what leaving a `with` block does)."""
        if self._file is not None:
            self.abort()

    def __enter__(self) -> PendingArtifact:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_store(
    root: Path, backend: ArtifactBackendSettings, *, max_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES
) -> ArtifactStore:
    """The store `backend` configures: the filesystem under `root`, or S3 (its uploads and
    reads still staged in `root`/tmp)."""
    location = backend.s3_location
    if location is None:
        return FileArtifactStore(root, max_bytes=max_bytes)
    # Imported here so a relayer on the filesystem store never loads the S3 client.
    from marketplace.api.artifacts_s3 import S3ArtifactStore

    return S3ArtifactStore.from_settings(
        location, backend, tmp_dir=Path(root) / "tmp", max_bytes=max_bytes
    )


def corrupt_error(sha256: str, actual: str, where: str) -> StoredArtifactCorrupted:
    """The report of a stored copy of `sha256` that hashed to `actual`, `where` saying what
    became of it."""
    return StoredArtifactCorrupted(
        f"the stored copy of artifact {sha256} hashes to {actual}: it is corrupt and "
        f"{where} (quarantine); upload the artifact again (PUT /artifacts/{sha256})"
    )


def not_found(sha256: str) -> ArtifactNotFound:
    return ArtifactNotFound(
        f"no artifact {sha256} is stored; upload it first (PUT /artifacts/{sha256})"
    )
