"""The S3 artifact store on a real S3-compatible server (s3rver, tests/s3_fixture.py): what the
API tests cannot see from outside (multipart uploads, the counts after a restart, what a failed
upload leaves, outages and wrong settings), the settings that choose it, and a relayer
configured for it serving an upload and a download."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from web3 import Web3

from marketplace.api.artifacts import (
    ArtifactCorrupted,
    ArtifactError,
    ArtifactTooLarge,
    FileArtifactStore,
    StoredArtifactCorrupted,
    StoreStats,
    open_store,
)
from marketplace.api.artifacts_s3 import (
    ArtifactStoreMisconfigured,
    ArtifactStoreUnavailable,
    S3ArtifactStore,
)
from marketplace.api.settings import ApiSettings
from marketplace.cli.relayer import api_app
from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, free_port, funded_account
from marketplace.protocol.artifact_backend import ArtifactBackendSettings, parse_s3_url
from marketplace.protocol.artifact_client import ArtifactClient, sha256_hex
from marketplace.relayer.service import Relayer
from tests.conftest import reverted, serve
from tests.integration.test_relayer_service import settings_for
from tests.s3_fixture import (
    ACCESS_KEY,
    BUCKET,
    SECRET_KEY,
    S3Objects,
    S3Server,
    s3rver_fixture,  # noqa: F401  (the fixture `s3rver`)
    start_s3rver,
    stop_s3rver,
)

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
#: The smallest part S3 takes: an artifact above it is uploaded in parts.
PART = 5 * MIB


def _settings(server: S3Server, prefix: str, **overrides: str) -> ArtifactBackendSettings:
    values = {
        "artifacts_url": server.url(prefix),
        "s3_endpoint_url": server.endpoint,
        "s3_access_key": ACCESS_KEY,
        "s3_secret_key": SECRET_KEY,
        **overrides,
    }
    return ApiSettings.model_validate(values)


def _store(
    server: S3Server, prefix: str, tmp: Path, *, max_bytes: int = 16 * MIB
) -> S3ArtifactStore:
    settings = _settings(server, prefix)
    location = settings.s3_location
    assert location is not None
    # The smallest part S3 allows, so a test upload takes several parts.
    return S3ArtifactStore.from_settings(
        location, settings, tmp_dir=tmp, max_bytes=max_bytes, part_size=PART
    )


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"unit-{request.node.name}"


def test_large_upload_in_parts_reads_back_verified_and_counts(
    s3rver: S3Server, tmp_path: Path, prefix: str
) -> None:
    store = _store(s3rver, prefix, tmp_path / "tmp")
    data = os.urandom(2 * PART + 12345)
    sha = store.put(data)
    assert S3Objects(s3rver, prefix).names() == [f"{sha[:2]}/{sha[2:]}"]
    assert store.exists(sha) and store.size(sha) == len(data)
    with store.open_verified(sha) as f:
        assert os.fstat(f.fileno()).st_size == len(data)
        assert f.read() == data
    assert b"".join(store.stream(sha)) == data
    assert store.stats() == StoreStats(artifacts=1, bytes=len(data), quarantined=0)
    # Storing it again changes nothing; nothing is left behind locally.
    with store.begin(sha) as pending:
        pending.write(data)
        pending.commit()
    assert pending.created is False
    assert store.stats().artifacts == 1
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_failed_upload_leaves_nothing_visible(
    s3rver: S3Server, tmp_path: Path, prefix: str
) -> None:
    store = _store(s3rver, prefix, tmp_path / "tmp", max_bytes=PART)
    data = os.urandom(1000)
    other = sha256_hex(b"something else")
    with pytest.raises(ArtifactCorrupted, match="sha256 of exactly the bytes"):
        store.put(data, other)
    with pytest.raises(ArtifactTooLarge, match=f"limit of {PART} bytes"):
        store.put(os.urandom(PART + 1))
    assert S3Objects(s3rver, prefix).names() == []
    assert not store.exists(other)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert store.stats() == StoreStats(0, 0, 0)


def test_corrupt_object_is_quarantined_and_the_counts_survive_a_restart(
    s3rver: S3Server, tmp_path: Path, prefix: str
) -> None:
    store = _store(s3rver, prefix, tmp_path / "tmp")
    objects = S3Objects(s3rver, prefix)
    good, bad = os.urandom(3000), os.urandom(4000)
    keep, rot = store.put(good), store.put(bad)
    objects.write(rot, bytes([bad[0] ^ 0xFF]) + bad[1:])
    with pytest.raises(StoredArtifactCorrupted, match=f"s3://{BUCKET}/{prefix}/quarantine/{rot}"):
        store.get(rot)
    assert not store.exists(rot)
    assert [n.split(".")[0] for n in objects.names("quarantine/")] == [f"quarantine/{rot}"]
    assert store.stats() == StoreStats(artifacts=1, bytes=len(good), quarantined=1)
    # A second process on the same prefix counts what is there.
    again = _store(s3rver, prefix, tmp_path / "tmp2")
    assert again.stats() == StoreStats(artifacts=1, bytes=len(good), quarantined=1)
    assert again.get(keep) == good
    assert again.delete(keep) and not again.delete(keep)
    assert again.stats() == StoreStats(artifacts=0, bytes=0, quarantined=1)


def test_an_outage_is_503_logged_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    server = S3Server(endpoint=f"http://127.0.0.1:{port}", port=port)
    proc = start_s3rver(tmp_path, port)
    try:
        store = _store(server, "outage", tmp_path / "tmp")
        data = os.urandom(2000)
        sha = store.put(data)
        stop_s3rver(proc)
        caplog.set_level(logging.INFO, logger="marketplace.api.artifacts_s3")
        for attempt in (lambda: store.get(sha), lambda: store.put(os.urandom(10))):
            with pytest.raises(ArtifactStoreUnavailable, match="retry shortly") as info:
                attempt()
            assert info.value.status == 503 and info.value.headers["retry-after"]
        assert store.stats().artifacts == 1  # a failed upload is not counted
        proc = start_s3rver(tmp_path, port)
        assert store.get(sha) == data
        lines = [r for r in caplog.records if r.name == "marketplace.api.artifacts_s3"]
        assert [r.levelno for r in lines if r.levelno >= logging.INFO] == [
            logging.WARNING,
            logging.INFO,
        ]
    finally:
        stop_s3rver(proc)


def test_wrong_settings_are_named(s3rver: S3Server, tmp_path: Path) -> None:
    # s3rver refuses an unknown key; it does not check secrets, which AWS and MinIO do.
    wrong_key = _settings(s3rver, "x", s3_access_key="not-the-key")
    location = wrong_key.s3_location
    assert location is not None
    with pytest.raises(ArtifactStoreMisconfigured, match="S3_ACCESS_KEY"):
        S3ArtifactStore.from_settings(location, wrong_key, tmp_dir=tmp_path, max_bytes=10)
    with pytest.raises(ArtifactError, match="does not exist"):
        S3ArtifactStore.from_settings(
            parse_s3_url("s3://no-such-bucket/x"),
            _settings(s3rver, "x"),
            tmp_dir=tmp_path,
            max_bytes=10,
        )
    dead = free_port()
    nowhere = _settings(s3rver, "x", s3_endpoint_url=f"http://127.0.0.1:{dead}")
    with pytest.raises(ArtifactStoreUnavailable, match=f"127.0.0.1:{dead}"):
        S3ArtifactStore.from_settings(location, nowhere, tmp_dir=tmp_path, max_bytes=10)


def test_settings_choose_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = ApiSettings(artifact_root=tmp_path)
    assert default.s3_location is None
    assert isinstance(open_store(tmp_path, default), FileArtifactStore)

    monkeypatch.setenv("DEPIN_API_ARTIFACTS_URL", "s3://my-bucket/relayer/artifacts/")
    monkeypatch.setenv("DEPIN_API_S3_ACCESS_KEY", "id")
    monkeypatch.setenv("DEPIN_API_S3_SECRET_KEY", "hunter2")
    monkeypatch.setenv("DEPIN_API_S3_ENDPOINT_URL", "https://minio.internal:9000/")
    settings = ApiSettings(artifact_root=tmp_path)
    assert str(settings.s3_location) == "s3://my-bucket/relayer/artifacts"
    assert settings.s3_endpoint_url == "https://minio.internal:9000"
    assert "hunter2" not in repr(settings)

    for bad, says in [
        ({"artifacts_url": "https://bucket/x"}, "not an s3:// URL"),
        ({"artifacts_url": "s3://B/x"}, "no valid bucket"),
        ({"s3_endpoint_url": "minio:9000"}, "http://HOST"),
        ({"s3_endpoint_url": "http://minio:9000/bucket"}, "has a path"),
    ]:
        with pytest.raises(ValidationError, match=says):
            ApiSettings(artifact_root=tmp_path, **bad)  # type: ignore[arg-type]
    monkeypatch.delenv("DEPIN_API_S3_SECRET_KEY")
    with pytest.raises(ValidationError, match="needs S3 credentials"):
        ApiSettings(artifact_root=tmp_path)


# ---------------------------------------------------------------------- a relayer on S3


@pytest.fixture
def cast(anvil: Anvil) -> Iterator[scenarios.Cast]:
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 10}))
    with reverted(w3):
        yield scenarios.setup(w3, funded_account(w3), providers=1)


def test_a_relayer_configured_for_s3_serves_uploads_and_downloads(
    cast: scenarios.Cast, s3rver: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3rver.env("RELAYER", "relayer").items():
        monkeypatch.setenv(name, value)
    settings = settings_for(cast, tmp_path).model_copy(update={"artifact_root": tmp_path / "a"})
    assert settings.artifacts_url == s3rver.url("relayer")
    relayer = Relayer(settings)
    url, server, thread = serve(api_app(relayer))
    try:
        data = os.urandom(100_000)
        with ArtifactClient(url, timeout=10) as client:
            sha = client.put(data)
            assert client.get(sha) == data
        assert S3Objects(s3rver, "relayer").read(sha) == data
        # Only the uploads in progress are local, and none is left.
        assert not any(len(p.name) == 2 for p in (tmp_path / "a").iterdir())
        assert list((tmp_path / "a" / "tmp").iterdir()) == []
        health = httpx.get(f"{url}/healthz", timeout=10).json()
        assert health["artifacts"] == 1
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        relayer.close()
