"""The relayer's HTTP API in a real uvicorn process, exercised over loopback HTTP.

The server runs `uvicorn --factory marketplace.api.app:create_app` configured only through
`DEPIN_API_*` variables, on a socket this module binds first (passed by file descriptor, so no
port can be taken in between). Every wait is bounded; the process is killed at teardown.

The artifact tests (`@both_backends`) run once with the filesystem store and once with the S3
store on a real S3-compatible server (tests/s3_fixture.py); they reach the stored copies through
`Server.stored`, as an operator or a rotting disk would.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import APIRouter, FastAPI
from fastapi.exceptions import WebSocketRequestValidationError
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from marketplace.api.app import create_app
from marketplace.api.errors import answer
from marketplace.api.settings import ApiSettings
from marketplace.devnet.anvil import free_port
from marketplace.protocol.artifact_client import (
    ArtifactClient,
    ArtifactCorrupted,
    ArtifactError,
    ArtifactNotFound,
    ArtifactTooLarge,
    RelayerUnreachable,
    sha256_hex,
)
from marketplace.protocol.deployment import Deployment
from marketplace.protocol.heartbeat import MemoryLivenessBook, SignedHeartbeat, sign_heartbeat
from tests.s3_fixture import S3Objects, S3Server, s3rver_fixture  # noqa: F401

pytestmark = pytest.mark.integration

CHAIN = 31337
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
LIMIT = 64 * 1024
INTERVAL = 5
STARTUP_SECONDS = 30.0

# ---------------------------------------------------------------------- the server


class Stored(Protocol):
    """The stored copies of artifacts, reached around the API."""

    def read(self, sha: str) -> bytes: ...
    def write(self, sha: str, data: bytes) -> None: ...
    def exists(self, sha: str) -> bool: ...
    def names(self, under: str = "") -> list[str]: ...


class FileObjects:
    """`Stored` of the filesystem store under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha[2:]

    def read(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def write(self, sha: str, data: bytes) -> None:
        self.path(sha).write_bytes(data)

    def exists(self, sha: str) -> bool:
        return self.path(sha).exists()

    def names(self, under: str = "") -> list[str]:
        return sorted(
            str(p.relative_to(self.root)) for p in (self.root / under).rglob("*") if p.is_file()
        )


@dataclass(frozen=True)
class Server:
    url: str
    root: Path
    log: Path
    stored: Stored


BACKENDS = ("file", "s3")
F = TypeVar("F")


def both_backends(test: F) -> F:
    """Runs `test` against the filesystem store and the S3 store (the others: filesystem)."""
    test.both_backends = True  # type: ignore[attr-defined]
    return test


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        both = getattr(metafunc.function, "both_backends", False)
        backends = BACKENDS if both else BACKENDS[:1]
        metafunc.parametrize("backend", backends, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPIN_API_")}
    env.update(
        DEPIN_API_ARTIFACT_ROOT=str(root),
        DEPIN_API_MAX_ARTIFACT_BYTES=str(LIMIT),
        DEPIN_API_CHAIN_ID=str(CHAIN),
        DEPIN_API_MARKET_ADDRESS=MARKET.lower(),
        DEPIN_API_HEARTBEAT_INTERVAL=str(INTERVAL),
    )
    env.update(extra)
    return env


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the API exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"the API did not answer /healthz within {STARTUP_SECONDS} s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, backend: str, request: pytest.FixtureRequest
) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("api")
    root, log = base / "artifacts", base / "server.log"
    extra: dict[str, str] = {}
    stored: Stored = FileObjects(root)
    if backend == "s3":
        s3: S3Server = request.getfixturevalue("s3rver")
        prefix = f"api-{base.name}"
        extra = s3.env("API", prefix)
        stored = S3Objects(s3, prefix)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "marketplace.api.app:create_app",
        "--fd",
        str(sock.fileno()),
        "--log-level",
        "warning",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, env=_env(root, **extra), pass_fds=[sock.fileno()], stdout=out, stderr=out
        )
    sock.close()
    try:
        _wait_ready(url, proc, log)
        yield Server(url=url, root=root, log=log, stored=stored)
    finally:
        _stop(proc)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture
def client(server: Server) -> Iterator[ArtifactClient]:
    with ArtifactClient(server.url, timeout=10) as c:
        yield c


def artifact(size: int = 4096) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, sha256_hex(data)


# ---------------------------------------------------------------------- artifacts


@both_backends
def test_put_get_round_trip(server: Server, client: ArtifactClient, http: httpx.Client) -> None:
    data, sha = artifact(20_000)
    assert client.put(data) == sha
    assert client.get(sha) == data
    assert client.exists(sha)
    assert server.stored.read(sha) == data

    response = http.get(f"/artifacts/{sha}")
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["etag"] == f'"{sha}"'

    head = http.head(f"/artifacts/{sha}")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(data))
    assert head.content == b""


@both_backends
def test_download_streams_to_a_file(client: ArtifactClient, tmp_path: Path) -> None:
    data, sha = artifact(LIMIT)
    client.put(data)
    dest = client.download(sha, tmp_path / "sub" / "input.bin")
    assert dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["input.bin"]


@both_backends
def test_empty_artifact_is_allowed(client: ArtifactClient) -> None:
    sha = client.put(b"")
    assert sha == sha256_hex(b"")
    assert client.get(sha) == b""


@both_backends
def test_same_content_twice_is_idempotent(
    server: Server, client: ArtifactClient, http: httpx.Client
) -> None:
    data, sha = artifact()
    first = http.put(f"/artifacts/{sha}", content=data)
    assert first.status_code == 201
    assert first.json() == {"sha256": sha, "size": len(data), "created": True}
    assert first.headers["location"] == f"/artifacts/{sha}"
    count = http.get("/healthz").json()["artifacts"]

    second = http.put(f"/artifacts/{sha}", content=data)
    assert second.status_code == 200
    assert second.json()["created"] is False
    assert client.put(data) == sha
    assert http.get("/healthz").json()["artifacts"] == count
    assert server.stored.read(sha) == data


@both_backends
def test_wrong_hash_is_rejected(server: Server, http: httpx.Client) -> None:
    data, sha = artifact()
    _, other = artifact()
    response = http.put(f"/artifacts/{other}", content=data)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert sha in detail and other in detail and "sha256 of exactly the bytes" in detail
    assert http.get(f"/artifacts/{other}").status_code == 404
    assert not server.stored.exists(other)
    assert list((server.root / "tmp").iterdir()) == []


@both_backends
def test_artifact_at_the_limit_is_accepted(client: ArtifactClient) -> None:
    data, sha = artifact(LIMIT)
    assert client.put(data) == sha


@both_backends
def test_oversize_with_content_length_gets_413(server: Server, http: httpx.Client) -> None:
    data, sha = artifact(LIMIT + 1)
    response = http.put(f"/artifacts/{sha}", content=data)
    assert response.status_code == 413
    assert f"limit of {LIMIT} bytes" in response.json()["detail"]
    assert "DEPIN_API_MAX_ARTIFACT_BYTES" in response.json()["detail"]
    assert not server.stored.exists(sha)


@both_backends
def test_oversize_streamed_without_length_gets_413(server: Server, http: httpx.Client) -> None:
    data, sha = artifact(LIMIT + 10_000)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 8192):
            yield data[start : start + 8192]

    response = http.put(f"/artifacts/{sha}", content=chunks())
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    assert "more than" in response.json()["detail"]
    assert not server.stored.exists(sha)
    assert list((server.root / "tmp").iterdir()) == []


@both_backends
def test_client_reports_oversize(client: ArtifactClient) -> None:
    with pytest.raises(ArtifactTooLarge, match=f"limit of {LIMIT} bytes"):
        client.put(os.urandom(LIMIT * 2))


@both_backends
def test_corrupted_file_is_detected_on_get(
    server: Server, client: ArtifactClient, http: httpx.Client
) -> None:
    data, sha = artifact()
    client.put(data)
    server.stored.write(sha, bytes([data[0] ^ 0xFF]) + data[1:])
    before = _samples(http.get("/metrics").text).get("depin_artifact_corrupt_total", 0.0)

    response = http.get(f"/artifacts/{sha}")
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert "corrupt" in detail and "quarantine" in detail and f"PUT /artifacts/{sha}" in detail
    assert not server.stored.exists(sha)
    quarantined = [name.split("/")[1].split(".")[0] for name in server.stored.names("quarantine")]
    assert quarantined.count(sha) == 1
    after = _samples(http.get("/metrics").text)["depin_artifact_corrupt_total"]
    assert after == before + 1

    with pytest.raises(ArtifactNotFound):
        client.get(sha)
    # Uploading the true bytes restores it.
    assert http.put(f"/artifacts/{sha}", content=data).status_code == 201
    assert client.get(sha) == data


@both_backends
def test_corruption_reported_to_the_client(server: Server, client: ArtifactClient) -> None:
    data, sha = artifact()
    client.put(data)
    server.stored.write(sha, data + b"!")
    with pytest.raises(ArtifactCorrupted, match="quarantine"):
        client.get(sha)
    assert not client.exists(sha)


@both_backends
def test_corruption_detected_on_head(server: Server, client: ArtifactClient) -> None:
    data, sha = artifact()
    client.put(data)
    server.stored.write(sha, data[:-1])
    # HEAD verifies too, so a client that asks before uploading re-uploads a rotten copy.
    assert not client.exists(sha)
    client.put(data)
    assert client.exists(sha)


@both_backends
def test_unknown_hash_is_404(client: ArtifactClient, http: httpx.Client) -> None:
    _, sha = artifact()
    response = http.get(f"/artifacts/{sha}")
    assert response.status_code == 404
    assert "upload it first" in response.json()["detail"]
    assert http.head(f"/artifacts/{sha}").status_code == 404
    assert not client.exists(sha)
    with pytest.raises(ArtifactNotFound, match=sha):
        client.get(sha)


@pytest.mark.parametrize(
    "name",
    ["abc", "0x" + "ab" * 32, "AB" * 32, "g" * 64, "a" * 65, "." * 64, "%00" + "a" * 63],
)
@both_backends
def test_malformed_hash_is_400(http: httpx.Client, name: str) -> None:
    response = http.get(f"/artifacts/{name}")
    assert response.status_code == 400
    assert "64 lowercase hex characters" in response.json()["detail"]
    assert http.put(f"/artifacts/{name}", content=b"x").status_code == 400
    head = http.head(f"/artifacts/{name}")
    assert head.status_code == 400
    assert "64 lowercase hex" in head.headers["x-depin-error"]


@both_backends
@pytest.mark.parametrize("name", ["..%2F..%2Fserver.log", "..%2fartifacts%2ftmp", "%2e%2e"])
def test_path_traversal_serves_nothing(http: httpx.Client, name: str) -> None:
    response = http.get(f"/artifacts/{name}")
    assert response.status_code in (400, 404)
    assert "detail" in response.json()


@both_backends
def test_client_refuses_malformed_hash_locally(client: ArtifactClient) -> None:
    with pytest.raises(ArtifactError, match="drop the 0x prefix"):
        client.get("0x" + "ab" * 32)
    with pytest.raises(ArtifactError, match="lowercase"):
        client.get("AB" * 32)


def test_client_verifies_what_the_server_sends() -> None:
    data, sha = artifact()

    def lying(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=data + b"tampered")

    transport = httpx.MockTransport(lying)
    with (
        ArtifactClient("http://relayer.test", transport=transport) as c,
        pytest.raises(ArtifactCorrupted, match=r"relayer at http://relayer\.test"),
    ):
        c.get(sha)


def test_client_download_leaves_nothing_on_mismatch(tmp_path: Path) -> None:
    _, sha = artifact()

    def lying(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"other bytes")

    transport = httpx.MockTransport(lying)
    with (
        ArtifactClient("http://relayer.test", transport=transport) as c,
        pytest.raises(ArtifactCorrupted),
    ):
        c.download(sha, tmp_path / "out.bin")
    assert list(tmp_path.iterdir()) == []


@both_backends
def test_client_caps_download_size(client: ArtifactClient, server: Server) -> None:
    data, sha = artifact(10_000)
    client.put(data)
    with (
        ArtifactClient(server.url, max_bytes=1000) as small,
        pytest.raises(ArtifactTooLarge, match="max_bytes"),
    ):
        small.get(sha)


def test_unreachable_relayer_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with ArtifactClient(url, timeout=2) as c, pytest.raises(RelayerUnreachable) as caught:
        c.put(b"data")
    message = str(caught.value)
    assert url in message and "depin relayer run" in message
    assert isinstance(caught.value, ConnectionError)


# ---------------------------------------------------------------------- heartbeats


def heartbeat(account: LocalAccount, **overrides: Any) -> SignedHeartbeat:
    fields: dict[str, Any] = {
        "chain_id": CHAIN,
        "market": MARKET,
        "timestamp": int(time.time()),
        "load": 0,
        "capacity": 2,
        "profiles": [0],
        "endpoint": None,
    }
    fields.update(overrides)
    return sign_heartbeat(account, **fields)


def post(http: httpx.Client, hb: SignedHeartbeat | bytes) -> httpx.Response:
    body = hb if isinstance(hb, bytes) else hb.model_dump_json().encode()
    return http.post("/heartbeats", content=body, headers={"content-type": "application/json"})


def liveness(http: httpx.Client) -> dict[str, dict[str, Any]]:
    body = http.get("/providers/liveness").json()
    assert body["interval"] == INTERVAL and body["missed"] == 3
    return {p["provider"]: p for p in body["providers"]}


def test_heartbeat_accepted_then_listed_as_live(http: httpx.Client) -> None:
    account = Account.create()
    hb = heartbeat(account, load=1, capacity=4, profiles=[1, 0], endpoint="http://10.1.2.3:8080")
    response = post(http, hb)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == account.address and body["status"] == "accepted"
    assert body["live_until"] == hb.heartbeat.timestamp + 3 * INTERVAL
    assert body["interval"] == INTERVAL  # the pace agents follow

    entry = liveness(http)[account.address]
    assert entry["live"] is True
    assert entry["last_seen"] == hb.heartbeat.timestamp
    assert entry["heartbeat"]["load"] == 1
    assert entry["heartbeat"]["profiles"] == [0, 1]
    assert entry["heartbeat"]["endpoint"] == "http://10.1.2.3:8080"


def test_heartbeat_older_than_held_is_409_and_duplicate_is_200(http: httpx.Client) -> None:
    account = Account.create()
    now = int(time.time())
    first = heartbeat(account, timestamp=now)
    assert post(http, first).json()["status"] == "accepted"
    assert post(http, first).json()["status"] == "duplicate"
    older = post(http, heartbeat(account, timestamp=now - 1))
    assert older.status_code == 409
    assert older.json()["reason"] == "replay"
    assert "current time" in older.json()["detail"]
    assert post(http, heartbeat(account, timestamp=now + 1)).json()["status"] == "accepted"


def test_heartbeat_with_bad_signature_is_rejected(http: httpx.Client) -> None:
    account, forger = Account.create(), Account.create()
    hb = heartbeat(account)
    forged = heartbeat(forger)
    swapped = SignedHeartbeat(heartbeat=hb.heartbeat, signature=forged.signature)
    response = post(http, swapped)
    assert response.status_code == 403
    assert response.json()["reason"] == "signer"
    assert account.address in response.json()["detail"]

    garbage = SignedHeartbeat(heartbeat=hb.heartbeat, signature="0x1234")
    response = post(http, garbage)
    assert response.status_code == 403
    assert response.json()["reason"] == "signature"
    assert account.address not in liveness(http)


def test_heartbeat_for_wrong_chain_is_rejected(http: httpx.Client) -> None:
    account = Account.create()
    response = post(http, heartbeat(account, chain_id=1))
    assert response.status_code == 400
    assert response.json()["reason"] == "chain"
    assert f"serves chain {CHAIN}" in response.json()["detail"]
    response = post(http, heartbeat(account, market=account.address))
    assert response.status_code == 400
    assert response.json()["reason"] == "market"
    assert account.address not in liveness(http)


def test_stale_and_future_heartbeats_are_rejected(http: httpx.Client) -> None:
    account = Account.create()
    stale = post(http, heartbeat(account, timestamp=int(time.time()) - 3600))
    assert stale.status_code == 400
    assert stale.json()["reason"] == "stale"
    assert "NTP" in stale.json()["detail"]
    future = post(http, heartbeat(account, timestamp=int(time.time()) + 3600))
    assert future.status_code == 400
    assert future.json()["reason"] == "future"
    assert account.address not in liveness(http)


@pytest.mark.parametrize("body", [b"", b"not json", b"{}", b'{"heartbeat": 1, "signature": ""}'])
def test_malformed_heartbeat_is_422(http: httpx.Client, body: bytes) -> None:
    response = post(http, body)
    assert response.status_code == 422
    assert response.json()["reason"] == "malformed"
    assert "malformed heartbeat" in response.json()["detail"]


def test_oversize_heartbeat_is_413(http: httpx.Client) -> None:
    response = post(http, b"{" + b" " * 20_000 + b"}")
    assert response.status_code == 413


# ---------------------------------------------------------------------- metrics

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"'
_VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)"
_HELP_LINE = re.compile(rf"# HELP ({_NAME}) .*")
_TYPE_LINE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)")
_SAMPLE_LINE = re.compile(rf"({_NAME})(\{{{_LABEL}(?:,{_LABEL})*\}})? ({_VALUE})")
_LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"')


def _series(name: str, **labels: str) -> str:
    """`name{labels}` with the labels sorted by name: label order carries no meaning in the
    format, so series are compared in this one spelling."""
    pairs = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{pairs}}}" if labels else name


def _samples(text: str) -> dict[str, float]:
    """Parses exposition text strictly; returns `_series(name, **labels)` -> value."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert _HELP_LINE.fullmatch(line), line
        elif line.startswith("# TYPE "):
            match = _TYPE_LINE.fullmatch(line)
            assert match, line
            assert match[1] not in types, f"{match[1]} typed twice"
            types[match[1]] = match[2]
        else:
            match = _SAMPLE_LINE.fullmatch(line)
            assert match, f"not an exposition line: {line!r}"
            name = match[1]
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in types or types.get(family) == "histogram", f"{name} has no TYPE"
            key = _series(name, **dict(_LABEL_PAIR.findall(match[2] or "")))
            assert key not in samples, f"{key} appears twice"
            samples[key] = float(match[3])
    return samples


@both_backends
def test_metrics_parse_and_move(http: httpx.Client, client: ArtifactClient) -> None:
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    before = _samples(response.text)

    data, sha = artifact(1000)
    client.put(data)
    client.get(sha)
    http.get("/artifacts/nothex")
    assert post(http, heartbeat(Account.create())).status_code == 200
    assert post(http, heartbeat(Account.create(), chain_id=5)).status_code == 400
    after = _samples(http.get("/metrics").text)

    def moved(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    def requests(route: str, method: str, status: str) -> str:
        return _series("depin_http_requests_total", route=route, method=method, status=status)

    assert moved(requests("/artifacts/{sha256}", "PUT", "201")) == 1
    assert moved(requests("/artifacts/{sha256}", "GET", "200")) == 1
    assert moved(requests("/artifacts/{sha256}", "GET", "400")) == 1
    assert moved(requests("/metrics", "GET", "200")) == 1
    assert moved("depin_artifacts_stored") == 1
    assert moved("depin_artifact_stored_bytes") == 1000
    assert moved("depin_artifact_uploaded_bytes_total") == 1000
    assert moved("depin_heartbeats_accepted_total") == 1
    assert moved(_series("depin_heartbeats_rejected_total", reason="chain")) == 1
    assert moved(_series("depin_providers_heartbeating", state="live")) >= 1
    count = _series("depin_http_request_duration_seconds_count", route="/artifacts/{sha256}")
    assert moved(count) == 3
    inf = _series(
        "depin_http_request_duration_seconds_bucket", route="/artifacts/{sha256}", le="+Inf"
    )
    assert after[inf] == after[count]


def test_histogram_buckets_are_cumulative(http: httpx.Client) -> None:
    samples = _samples(http.get("/metrics").text)
    buckets: dict[str, list[tuple[float, float]]] = {}
    for key, value in samples.items():
        match = re.fullmatch(r'depin_http_request_duration_seconds_bucket\{le="(.*)",(.*)\}', key)
        if match:
            buckets.setdefault(match[2], []).append((float(match[1]), value))
    assert buckets
    for series in buckets.values():
        counts = [v for _, v in sorted(series)]
        assert counts == sorted(counts)


def test_healthz_reports_configuration(http: httpx.Client) -> None:
    body = http.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["max_artifact_bytes"] == LIMIT
    assert body["chain_id"] == CHAIN and body["market"] == MARKET


def test_unknown_route_is_counted_once_as_unmatched(http: httpx.Client) -> None:
    assert http.get("/no/such/route").status_code == 404
    text = http.get("/metrics").text
    unmatched = _series("depin_http_requests_total", route="unmatched", method="GET", status="404")
    assert unmatched in _samples(text)
    assert "/no/such/route" not in text


def test_one_handler_answers_known_and_unexpected_errors(
    server: Server, http: httpx.Client, tmp_path: Path
) -> None:
    # Every handler the app registers, but FastAPI's own for HTTP errors, is the one.
    app = create_app(_settings(tmp_path))
    ours = {
        h
        for k, h in app.exception_handlers.items()
        if k not in (HTTPException, WebSocketRequestValidationError)
    }
    assert ours == {answer}
    # Known: the store's ArtifactNotFound, as JSON and, for HEAD, in a header.
    _, sha = artifact()
    missing = http.get(f"/artifacts/{sha}")
    assert (missing.status_code, missing.headers["content-type"]) == (404, "application/json")
    assert missing.json() == {
        "detail": f"no artifact {sha} is stored; upload it first (PUT /artifacts/{sha})"
    }
    head = http.head(f"/artifacts/{sha}")
    assert head.status_code == 404 and "upload it first" in head.headers["x-depin-error"]
    # Known: a request validation error keeps FastAPI's list of problems.
    invalid = http.get("/jobs/seven/results")
    assert invalid.status_code == 422
    assert [p["loc"] for p in invalid.json()["detail"]] == [["path", "job_id"]]
    # Unexpected: the result index finds a directory where a job's notices should be.
    (server.root / "results" / "7.json").mkdir()
    before = _samples(http.get("/metrics").text)
    broken = http.get("/jobs/7/results")
    assert (broken.status_code, broken.headers["content-type"]) == (500, "application/json")
    detail = broken.json()["detail"]
    assert "unexpected IsADirectoryError" in detail and "report it" in detail
    assert str(server.root) not in detail  # nothing of the relayer's internals
    # The answer leaves the error to the server, which logs its traceback.
    deadline = time.monotonic() + 30
    while "IsADirectoryError" not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log.read_text()
    assert "Traceback" in log and "IsADirectoryError" in log, log
    after = _samples(http.get("/metrics").text)
    key = _series(
        "depin_http_requests_total", route="/jobs/{job_id}/results", method="GET", status="500"
    )
    assert after[key] == before.get(key, 0.0) + 1


# ---------------------------------------------------------------------- entry point


def test_python_m_marketplace_api_serves(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "main.log"
    env = _env(tmp_path / "artifacts", DEPIN_API_PORT=str(port))
    env.pop("DEPIN_API_CHAIN_ID")
    env.pop("DEPIN_API_MARKET_ADDRESS")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marketplace.api"], env=env, stdout=out, stderr=out
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc, log)
        assert httpx.get(f"{url}/healthz", timeout=5).json()["chain_id"] is None
        response = httpx.post(f"{url}/heartbeats", content=b"{}", timeout=5)
        assert response.status_code == 503
        assert "DEPIN_API_CHAIN_ID" in response.json()["detail"]
        data = json.dumps({"hello": "world"}).encode()
        with ArtifactClient(url, timeout=5) as c:
            assert c.get(c.put(data)) == data
    finally:
        _stop(proc)


# ---------------------------------------------------------------------- wiring (in process)


def _settings(tmp_path: Path, **overrides: Any) -> ApiSettings:
    fields: dict[str, Any] = {
        "artifact_root": tmp_path / "artifacts",
        "chain_id": CHAIN,
        "market_address": MARKET,
    }
    fields.update(overrides)
    return ApiSettings(**fields)


def _call(app: FastAPI, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request to `app` in process (no server): for wiring that needs custom arguments."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            return await c.request(method, url, **kwargs)

    return asyncio.run(go())


class _Registered:
    def __init__(self, *addresses: str) -> None:
        self.addresses = {a.lower() for a in addresses}

    def is_registered(self, address: str) -> bool:
        return address.lower() in self.addresses


def test_provider_source_refuses_unregistered_providers(tmp_path: Path) -> None:
    known, stranger = Account.create(), Account.create()
    book = MemoryLivenessBook()
    app = create_app(_settings(tmp_path), provider_source=_Registered(known.address), liveness=book)
    accepted = _call(app, "POST", "/heartbeats", content=heartbeat(known).model_dump_json())
    assert accepted.status_code == 200
    refused = _call(app, "POST", "/heartbeats", content=heartbeat(stranger).model_dump_json())
    assert refused.status_code == 403
    assert refused.json()["reason"] == "unregistered"
    assert "depin provider register" in refused.json()["detail"]
    # The book given to the app is the one it writes: the matcher reads the same object.
    assert set(book.snapshot()) == {known.address}
    assert book.is_live(known.address, int(time.time()), INTERVAL)


def test_routers_are_included(tmp_path: Path) -> None:
    router = APIRouter(prefix="/jobs")

    @router.get("/count")
    def count() -> dict[str, int]:
        return {"jobs": 0}

    app = create_app(_settings(tmp_path), routers=[router])
    assert _call(app, "GET", "/jobs/count").json() == {"jobs": 0}
    assert 'route="/jobs/count"' in _call(app, "GET", "/metrics").text


#: Each metric family as prometheus_client's parser reads it (a counter's family name has no
#: `_total`): type, HELP text, and each sample name with the label names it carries.
_FAMILIES: dict[str, tuple[str, str, dict[str, set[str]]]] = {
    "depin_http_requests": (
        "counter",
        "HTTP requests served, by route template, method and status.",
        {"depin_http_requests_total": {"route", "method", "status"}},
    ),
    "depin_http_request_duration_seconds": (
        "histogram",
        "Time to serve an HTTP request, until the last body byte is sent, by route template.",
        {
            "depin_http_request_duration_seconds_bucket": {"route", "le"},
            "depin_http_request_duration_seconds_sum": {"route"},
            "depin_http_request_duration_seconds_count": {"route"},
        },
    ),
    "depin_artifacts_stored": (
        "gauge",
        "Artifacts in the store.",
        {"depin_artifacts_stored": set()},
    ),
    "depin_artifact_stored_bytes": (
        "gauge",
        "Bytes of artifacts in the store.",
        {"depin_artifact_stored_bytes": set()},
    ),
    "depin_artifact_uploaded_bytes": (
        "counter",
        "Bytes received in completed uploads.",
        {"depin_artifact_uploaded_bytes_total": set()},
    ),
    "depin_artifact_corrupt": (
        "counter",
        "Stored artifacts found corrupt on read and quarantined.",
        {"depin_artifact_corrupt_total": set()},
    ),
    "depin_heartbeats_accepted": (
        "counter",
        "Provider heartbeats accepted.",
        {"depin_heartbeats_accepted_total": set()},
    ),
    "depin_heartbeats_rejected": (
        "counter",
        "Provider heartbeats rejected, by reason.",
        {"depin_heartbeats_rejected_total": {"reason"}},
    ),
    "depin_providers_heartbeating": (
        "gauge",
        "Providers with a recorded heartbeat (all), and those live now (live).",
        {"depin_providers_heartbeating": {"state"}},
    ),
}


def test_metrics_read_by_the_reference_parser(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))
    data, sha = artifact(1000)
    assert _call(app, "PUT", f"/artifacts/{sha}", content=data).status_code == 201
    assert _call(app, "GET", f"/artifacts/{sha}").content == data
    (tmp_path / "artifacts" / sha[:2] / sha[2:]).write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    assert _call(app, "GET", f"/artifacts/{sha}").status_code == 500
    body = heartbeat(Account.create()).model_dump_json()
    assert _call(app, "POST", "/heartbeats", content=body).status_code == 200
    body = heartbeat(Account.create(), chain_id=5).model_dump_json()
    assert _call(app, "POST", "/heartbeats", content=body).status_code == 400

    response = _call(app, "GET", "/metrics")
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(response.text)}

    assert set(families) == set(_FAMILIES)
    for name, (kind, help_text, label_names) in _FAMILIES.items():
        family = families[name]
        assert (family.type, family.documentation) == (kind, help_text), name
        assert {s.name for s in family.samples} == set(label_names), name
        for sample in family.samples:
            assert set(sample.labels) == label_names[sample.name], sample

    def value(name: str, **labels: str) -> float:
        found = [
            s.value
            for f in families.values()
            for s in f.samples
            if s.name == name and s.labels == labels
        ]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    requests = "depin_http_requests_total"
    assert value(requests, route="/artifacts/{sha256}", method="PUT", status="201") == 1
    assert value(requests, route="/artifacts/{sha256}", method="GET", status="500") == 1
    assert value("depin_artifact_uploaded_bytes_total") == 1000
    assert value("depin_artifact_corrupt_total") == 1
    # The corrupt copy was quarantined, so the store is empty again.
    assert value("depin_artifacts_stored") == 0
    assert value("depin_heartbeats_accepted_total") == 1
    assert value("depin_heartbeats_rejected_total", reason="chain") == 1
    assert value("depin_providers_heartbeating", state="all") == 1
    assert value("depin_providers_heartbeating", state="live") == 1
    buckets = [
        float(s.labels["le"])
        for s in families["depin_http_request_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["route"] == "/heartbeats"
    ]
    assert buckets == [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.inf]
    count = "depin_http_request_duration_seconds_count"
    assert value(count, route="/heartbeats") == 2


def test_each_app_counts_in_its_own_registry(tmp_path: Path) -> None:
    busy = create_app(_settings(tmp_path / "busy"))
    idle = create_app(_settings(tmp_path / "idle"))
    body = heartbeat(Account.create()).model_dump_json()
    assert _call(busy, "POST", "/heartbeats", content=body).status_code == 200
    key = "depin_heartbeats_accepted_total"
    assert _samples(_call(busy, "GET", "/metrics").text)[key] == 1
    assert _samples(_call(idle, "GET", "/metrics").text)[key] == 0


def test_settings_read_the_deployment_file(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    Deployment(
        chain_id=1337,
        token=MARKET,
        registry=MARKET,
        market=MARKET.lower(),
        block=1,
        deployer=MARKET,
    ).write(path)
    settings = ApiSettings(artifact_root=tmp_path, deployment_file=path)
    assert settings.chain_id == 1337 and settings.market_address == MARKET
    explicit = ApiSettings(artifact_root=tmp_path, deployment_file=path, chain_id=5)
    assert explicit.chain_id == 5


def test_settings_name_a_bad_market_address(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="JobMarket's 0x-prefixed 20-byte address"):
        ApiSettings(artifact_root=tmp_path, market_address="0x1234")


def test_settings_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPIN_API_ARTIFACT_ROOT", str(tmp_path))
    monkeypatch.setenv("DEPIN_API_MAX_ARTIFACT_BYTES", "123")
    monkeypatch.setenv("DEPIN_API_HEARTBEAT_MAX_SKEW", "7")
    monkeypatch.setenv("DEPIN_API_PORT", "9999")
    settings = ApiSettings()
    assert settings.artifact_root == tmp_path
    assert (settings.max_artifact_bytes, settings.heartbeat_max_skew) == (123, 7)
    assert settings.port == 9999


def test_the_api_docs_need_no_cdn(http: httpx.Client) -> None:
    for page in ("/docs", "/redoc"):
        html = http.get(page)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert assets and all(a.startswith("/docs/static/") for a in assets), assets
        for asset in assets:
            served = http.get(asset)
            assert served.status_code == 200 and len(served.content) > 1_000, asset
    assert (
        "cdn." not in http.get("/docs").text and "fonts.googleapis" not in http.get("/redoc").text
    )
    schema = http.get("/openapi.json").json()
    assert "/artifacts/{sha256}" in schema["paths"]


def test_made_up_methods_share_one_metrics_series(http: httpx.Client) -> None:
    for verb in ("BREW", "WHEN", "FROB"):
        http.request(verb, "/status")
    families = {
        s.labels.get("method")
        for f in text_string_to_metric_families(http.get("/metrics").text)
        for s in f.samples
        if s.name == "depin_http_requests_total"
    }
    assert "other" in families and not {"BREW", "WHEN", "FROB"} & families
