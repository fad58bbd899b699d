"""A real S3-compatible server for the tests of the S3 artifact store.

`s3rver` (session scope) runs the npm package s3rver (pinned in package.json, installed in
node_modules by the bootstrap) on a free port of 127.0.0.1, its objects in a temporary
directory, with bucket `BUCKET` created at start. It knows one access key (below) and refuses
others; unlike AWS it does not check the signature against the secret. Each user takes its own
key prefix (`S3Server.url(prefix)`), so tests sharing the server see only their own objects.
The server is stopped when the session ends; `start_s3rver` runs one a test can stop.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from minio import Minio

from marketplace.devnet.anvil import free_port

#: s3rver's built-in credentials.
ACCESS_KEY = "S3RVER"
SECRET_KEY = "S3RVER"
BUCKET = "depin-artifacts"
_ROOT = Path(__file__).resolve().parents[1]
_STARTUP_SECONDS = 30.0


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    port: int

    def url(self, prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}"

    def env(self, role: str, prefix: str) -> dict[str, str]:
        """The variables that point role `role` (API, RELAYER) at this server under `prefix`."""
        return {
            f"DEPIN_{role}_ARTIFACTS_URL": self.url(prefix),
            f"DEPIN_{role}_S3_ENDPOINT_URL": self.endpoint,
            f"DEPIN_{role}_S3_ACCESS_KEY": ACCESS_KEY,
            f"DEPIN_{role}_S3_SECRET_KEY": SECRET_KEY,
        }

    def client(self) -> Minio:
        return Minio(
            f"127.0.0.1:{self.port}",
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            secure=False,
            region="us-east-1",
        )


class S3Objects:
    """Direct access to the objects under one prefix, as an operator (or rot) would touch them."""

    def __init__(self, server: S3Server, prefix: str) -> None:
        self.client = server.client()
        self.prefix = prefix

    def key(self, sha: str) -> str:
        return f"{self.prefix}/{sha[:2]}/{sha[2:]}"

    def read(self, sha: str) -> bytes:
        response = self.client.get_object(BUCKET, self.key(sha))
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def write(self, sha: str, data: bytes) -> None:
        self.client.put_object(BUCKET, self.key(sha), io.BytesIO(data), len(data))

    def exists(self, sha: str) -> bool:
        return any(True for _ in self.client.list_objects(BUCKET, prefix=self.key(sha)))

    def names(self, under: str = "") -> list[str]:
        """Object names below the prefix (`under` a sub-prefix, e.g. "quarantine/")."""
        base = f"{self.prefix}/"
        found = self.client.list_objects(BUCKET, prefix=base + under, recursive=True)
        return sorted((o.object_name or "")[len(base) :] for o in found)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"s3rver exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"s3rver did not listen within {_STARTUP_SECONDS} s:\n{log.read_text()}")


def start_s3rver(base: Path, port: int) -> subprocess.Popen[bytes]:
    """s3rver on 127.0.0.1:`port` keeping its objects in `base`/data (kept across restarts),
    ready with bucket BUCKET; stop it with `stop_s3rver`."""
    binary = _ROOT / "node_modules/.bin/s3rver"
    if not os.access(binary, os.X_OK):
        pytest.fail(
            f"{binary} is missing: install the npm toolchain (`npm ci`, which `make bootstrap` "
            "and .ci/run do)"
        )
    log = base / "s3rver.log"
    command = [str(binary), "-d", str(base / "data"), "-a", "127.0.0.1", "-p", str(port)]
    command += ["--silent", "--configure-bucket", BUCKET]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:
        _wait_ready(port, proc, log)
        client = S3Server(endpoint=f"http://127.0.0.1:{port}", port=port).client()
        # The bucket is made just after the port opens: wait for it too.
        deadline = time.monotonic() + _STARTUP_SECONDS
        while not client.bucket_exists(BUCKET):
            assert time.monotonic() < deadline, f"s3rver made no bucket:\n{log.read_text()}"
            time.sleep(0.05)
    except BaseException:
        stop_s3rver(proc)
        raise
    return proc


def stop_s3rver(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session", name="s3rver")
def s3rver_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = free_port()
    proc = start_s3rver(tmp_path_factory.mktemp("s3rver"), port)
    try:
        yield S3Server(endpoint=f"http://127.0.0.1:{port}", port=port)
    finally:
        stop_s3rver(proc)
