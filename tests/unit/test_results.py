"""Result payloads, their encryption to the requester, verification against the on-chain
commitment, and the signed notices with their API index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from marketplace.api.app import create_app
from marketplace.api.settings import ApiSettings
from marketplace.protocol import hashing
from marketplace.protocol.results import (
    FAILURE_CODES,
    ResultError,
    ResultPayload,
    SignedResultNotice,
    decrypt_result,
    encrypt_result,
    failure_committed,
    failure_of,
    public_key_hex,
    sign_result_notice,
    verify_result,
    verify_result_notice,
)

PROFILE = "torch-2.13.0/cpu/float32/deterministic"
REQUESTER = Account.from_key(b"\x01" * 32)
PROVIDER = Account.from_key(b"\x02" * 32)
MARKET = "0x" + "11" * 20


def _payload(job_id: int = 5) -> ResultPayload:
    return ResultPayload(
        job_id,
        PROFILE,
        {"c": np.arange(6, dtype=np.float32).reshape(2, 3), "empty": np.zeros((0, 4), np.float32)},
    )


def test_round_trip_through_encryption_keeps_the_digest() -> None:
    payload = _payload()
    back = decrypt_result(REQUESTER, encrypt_result(public_key_hex(REQUESTER), payload))
    assert (back.job_id, back.profile, back.failure) == (5, PROFILE, "")
    assert back.digest() == payload.digest()
    assert back.outputs["empty"].shape == (0, 4)


def test_only_the_requester_key_decrypts() -> None:
    ciphertext = encrypt_result(public_key_hex(REQUESTER), _payload())
    with pytest.raises(ResultError, match="does not decrypt"):
        decrypt_result(PROVIDER, ciphertext)


def test_failure_payload_digests_its_code_not_its_message() -> None:
    a = ResultPayload.failed(1, PROFILE, "input-invalid", "one message")
    b = ResultPayload.failed(1, PROFILE, "input-invalid", "another message")
    c = ResultPayload.failed(1, PROFILE, "spec-invalid", "one message")
    assert a.digest() == b.digest() != c.digest()
    assert ResultPayload.from_bytes(a.to_bytes()).message == "one message"


def test_verify_result_checks_job_profile_and_commitment() -> None:
    payload = _payload()
    commitment = hashing.commitment_of(5, PROVIDER.address, payload.digest())
    args = {"job_id": 5, "provider": PROVIDER.address, "profile": PROFILE}
    assert verify_result(payload, commitment=commitment, **args) == payload.digest()  # type: ignore[arg-type]
    with pytest.raises(ResultError, match="not what"):
        verify_result(payload, commitment=commitment ^ 1, **args)  # type: ignore[arg-type]
    with pytest.raises(ResultError, match="not job 6"):
        verify_result(payload, commitment=commitment, **{**args, "job_id": 6})  # type: ignore[arg-type]
    with pytest.raises(ResultError, match="profile"):
        verify_result(payload, commitment=commitment, **{**args, "profile": "other"})  # type: ignore[arg-type]


def test_garbage_is_not_a_payload() -> None:
    with pytest.raises(ResultError, match="not a depin result"):
        ResultPayload.from_bytes(b"\x00" * 3)


def test_notice_signature_binds_provider_and_deployment() -> None:
    signed = sign_result_notice(
        PROVIDER, chain_id=31337, market=MARKET, job_id=3, artifact="a" * 64, timestamp=10
    )
    wire = SignedResultNotice.from_json(signed.model_dump_json())
    assert verify_result_notice(wire, chain_id=31337, market=MARKET) == PROVIDER.address
    with pytest.raises(ResultError, match="serves chain 1"):
        verify_result_notice(wire, chain_id=1, market=MARKET)
    forged = wire.model_copy(update={"notice": wire.notice.model_copy(update={"job_id": 4})})
    with pytest.raises(ResultError, match="signed by"):
        verify_result_notice(forged, chain_id=31337, market=MARKET)


def test_api_keeps_the_newest_notice_per_provider(tmp_path: Path) -> None:
    settings = ApiSettings(artifact_root=tmp_path, chain_id=31337, market_address=MARKET)
    client = TestClient(create_app(settings))

    def post(t: int, artifact: str) -> int:
        signed = sign_result_notice(
            PROVIDER,
            chain_id=31337,
            market=MARKET,
            job_id=3,
            artifact=artifact,
            timestamp=t,
        )
        return client.post("/results", content=signed.model_dump_json()).status_code

    assert post(10, "a" * 64) == 200
    assert post(10, "a" * 64) == 200  # an exact duplicate
    assert post(9, "b" * 64) == 409
    assert post(11, "c" * 64) == 200
    assert client.post("/results", content=b"{}").status_code == 422
    results = client.get("/jobs/3/results").json()["results"]
    assert [(r["provider"], r["artifact"]) for r in results] == [(PROVIDER.address, "c" * 64)]
    # The index is on disk: a new app over the same root serves it.
    again = TestClient(create_app(settings)).get("/jobs/3/results").json()["results"]
    assert again == results
    assert client.get("/jobs/4/results").json()["results"] == []


def test_a_failure_is_read_from_its_digest_or_commitment_alone() -> None:
    provider = "0x" + "ab" * 20
    for code in FAILURE_CODES:
        failed = ResultPayload.failed(7, PROFILE, code, "whatever the message").digest()
        assert failure_of(PROFILE, failed) == code
        commitment = hashing.commitment_of(7, provider, failed)
        assert failure_committed(PROFILE, 7, provider, commitment) == code
        assert failure_committed(PROFILE, 8, provider, commitment) is None  # another job
        assert failure_of("another/profile", failed) is None  # the profile is digested
    ran = ResultPayload(7, PROFILE, {"x": np.zeros(2, np.float32)}).digest()
    assert failure_of(PROFILE, ran) is None
    assert failure_committed(PROFILE, 7, provider, hashing.commitment_of(7, provider, ran)) is None


def test_a_failure_code_outside_the_closed_list_is_refused() -> None:
    with pytest.raises(ResultError, match="unknown failure code 'gpu-on-fire'"):
        ResultPayload.failed(1, PROFILE, "gpu-on-fire", "")


def test_every_code_the_provider_fails_with_is_in_the_closed_list() -> None:
    import ast

    source = (Path(__file__).parents[2] / "provider" / "execute.py").read_text()
    codes = {
        node.args[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "JobFailed"
        and isinstance(node.args[0], ast.Constant)
    }
    assert codes and codes <= set(FAILURE_CODES)
