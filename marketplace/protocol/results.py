"""Job results: the payload a provider uploads, its encryption, and the signed notice that says
where it is.

A result payload is a safetensors file of the job's output arrays, with metadata naming the
format, the job, the determinism profile, and for a failed job its failure code and message::

    metadata = {"format": "depin-result/v1", "job_id": "42",
                "profile": "torch-2.13.0/cpu/float32/deterministic",
                "failure": "", "message": ""}

Its digest (`marketplace.protocol.digest`) is what the provider committed on-chain; a requester
checks a downloaded result by recomputing the digest and the commitment the contract stores for
that provider (`verify_result`), so neither the artifact store nor the relayer is trusted.

A job that cannot run as specified (its spec or inputs are malformed, too large, or the module
fails on them) still has a result: the single output ``failure`` holding the failure code as
UTF-8 bytes. Every honest provider reaches the same code, so replicas agree, the job settles
and the requester learns why (the free-text `message` is metadata, outside the digest, because
library messages are not byte-stable).

The payload is encrypted to the requester's secp256k1 public key from the spec (ECIES: ephemeral
secp256k1 key, HKDF-SHA256, AES-256-GCM; the `eciespy` package), so verifiers and copycats who
can read the artifact store learn nothing from it.

A provider announces the uploaded artifact with a `ResultNotice` signed as an EIP-191 personal
message, like heartbeats; its `type` keeps a notice signature from passing as any other message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import ecies
import numpy as np
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from marketplace.protocol import hashing
from marketplace.protocol.digest import DigestError, digest
from marketplace.protocol.errors import DepinError, validation_problems

__all__ = [
    "FAILURE_CODES",
    "FAILURE_OUTPUT",
    "RESULT_FORMAT",
    "RESULT_NOTICE_TYPE",
    "ResultError",
    "ResultNotice",
    "ResultPayload",
    "SignedResultNotice",
    "decrypt_result",
    "encrypt_result",
    "failure_committed",
    "failure_digests",
    "failure_of",
    "failure_outputs",
    "public_key_hex",
    "sign_result_notice",
    "verify_result",
    "verify_result_notice",
]

RESULT_FORMAT: Final = "depin-result/v1"
RESULT_NOTICE_TYPE: Final = "depin-result-notice/v1"
#: The one output of a failed job: its failure code as UTF-8 bytes.
FAILURE_OUTPUT: Final = "failure"
#: Every failure code a provider commits. The list is closed so that anyone who knows a job's
#: profile and its upheld digest (or commitment) can tell a failure from the chain alone,
#: without the encrypted result: `failure_of`.
FAILURE_CODES: Final = (
    "input-invalid",
    "input-missing",
    "input-too-large",
    "model-unsupported",
    "profile-mismatch",
    "spec-invalid",
    "spec-missing",
)
_MAX_MESSAGE_CHARS: Final = 2_000


class ResultError(DepinError, ValueError):
    """A result payload, its encryption or its notice is unusable; the message says which."""


# ---------------------------------------------------------------------------- payload


def failure_digests(profile: str) -> dict[bytes, str]:
    """The digest of each failure result under `profile`, mapped to its code."""
    return {digest(profile, failure_outputs(code)): code for code in FAILURE_CODES}


def failure_of(profile: str, upheld: bytes) -> str | None:
    """The failure code when the `upheld` digest is a failure result under `profile`."""
    return failure_digests(profile).get(upheld)


def failure_committed(profile: str, job_id: int, provider: str, commitment: int) -> str | None:
    """The failure code when `provider`'s `commitment` on `job_id` is to a failure result
    under `profile` (a job settled without a reveal upholds its executor's commitment)."""
    for failed, code in failure_digests(profile).items():
        if hashing.commitment_of(job_id, provider, failed) == commitment:
            return code
    return None


def failure_outputs(code: str) -> dict[str, np.ndarray[Any, Any]]:
    """The outputs of a job that failed with `code` (a short stable identifier)."""
    return {FAILURE_OUTPUT: np.frombuffer(code.encode("utf-8"), dtype=np.uint8).copy()}


@dataclass(frozen=True)
class ResultPayload:
    """A job's outputs, as produced by a provider or decoded from a result artifact."""

    job_id: int
    profile: str
    outputs: Mapping[str, np.ndarray[Any, Any]]
    #: Failure code ("" for a job that ran); part of the digest through `outputs`.
    failure: str = ""
    #: Human-readable detail of the failure; not digested.
    message: str = ""

    @classmethod
    def failed(cls, job_id: int, profile: str, code: str, message: str) -> ResultPayload:
        if code not in FAILURE_CODES:
            raise ResultError(
                f"unknown failure code {code!r}; use one of {', '.join(FAILURE_CODES)} (or add it "
                "to FAILURE_CODES, which requesters read failures with)"
            )
        return cls(job_id, profile, failure_outputs(code), code, message[:_MAX_MESSAGE_CHARS])

    def digest(self) -> bytes:
        """The digest the provider commits (and every honest replica reproduces)."""
        return digest(self.profile, self.outputs)

    def to_bytes(self) -> bytes:
        """The safetensors encoding (the plaintext that gets encrypted)."""
        metadata = {
            "format": RESULT_FORMAT,
            "job_id": str(self.job_id),
            "profile": self.profile,
            "failure": self.failure,
            "message": self.message,
        }
        arrays = {name: np.ascontiguousarray(a) for name, a in self.outputs.items()}
        return bytes(st_save(arrays, metadata=metadata))

    @classmethod
    def from_bytes(cls, data: bytes) -> ResultPayload:
        try:
            outputs = st_load(data)
            metadata = _safetensors_metadata(data)
        except (SafetensorError, ValueError, KeyError) as exc:
            raise ResultError(
                f"the result is not a depin result payload ({exc}); download it again, or ask "
                "the provider to re-upload it"
            ) from None
        if metadata.get("format") != RESULT_FORMAT:
            raise ResultError(
                f"the result has format {metadata.get('format')!r}, this SDK reads "
                f"{RESULT_FORMAT!r}; upgrade depin-compute"
            )
        try:
            job_id = int(metadata["job_id"])
            profile = metadata["profile"]
        except (KeyError, ValueError):
            raise ResultError("the result's metadata lacks job_id or profile") from None
        return cls(
            job_id,
            profile,
            outputs,
            metadata.get("failure", ""),
            metadata.get("message", ""),
        )


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    if len(data) < 8:
        raise ValueError("too short for a safetensors header")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError("the header length runs past the end")
    header = json.loads(data[8 : 8 + size])
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict):
        raise ValueError("__metadata__ is not an object")
    return {str(k): str(v) for k, v in metadata.items()}


# ---------------------------------------------------------------------------- encryption


def public_key_hex(account: LocalAccount) -> str:
    """The 64-byte uncompressed public key of `account` as 128 hex characters (no 0x, no 04):
    the form a job spec's `requester_public_key` takes."""
    key = account._key_obj.public_key
    return bytes(key.to_bytes()).hex()


def encrypt_result(public_key: str, payload: ResultPayload) -> bytes:
    """ECIES-encrypts `payload` to the requester's public key (hex, as in the job spec)."""
    key = public_key.removeprefix("0x")
    try:
        return bytes(ecies.encrypt(key, payload.to_bytes()))
    except (ValueError, TypeError) as exc:
        raise ResultError(
            f"cannot encrypt to public key {key[:16]}... ({exc}); the spec's "
            "requester_public_key must be a secp256k1 key (128 or 66 hex characters)"
        ) from None


def decrypt_result(account: LocalAccount, ciphertext: bytes) -> ResultPayload:
    """Decrypts a result artifact with the requester's key and decodes the payload."""
    try:
        plain = ecies.decrypt(bytes(account.key), ciphertext)
    except (ValueError, TypeError) as exc:
        raise ResultError(
            f"the result does not decrypt with {account.address}'s key ({exc}); use the key "
            "whose public key the job spec named"
        ) from None
    return ResultPayload.from_bytes(bytes(plain))


def verify_result(
    payload: ResultPayload, *, job_id: int, provider: str, commitment: int, profile: str
) -> bytes:
    """The payload's digest, checked against what `provider` committed on-chain for `job_id`.

    `commitment` is the 64-bit value the contract stores for that participant and `profile` the
    spec's determinism profile. Raises ResultError when any of them does not match.
    """
    if payload.job_id != job_id:
        raise ResultError(f"the result is for job {payload.job_id}, not job {job_id}")
    if payload.profile != profile:
        raise ResultError(
            f"the result was computed under profile {payload.profile!r}, the job asked for "
            f"{profile!r}; the provider ran the wrong profile"
        )
    try:
        value = payload.digest()
    except DigestError as exc:
        raise ResultError(f"the result's outputs cannot be digested: {exc}") from None
    if hashing.commitment_of(job_id, provider, value) != commitment:
        raise ResultError(
            f"the result's digest 0x{value.hex()} is not what {provider} committed for job "
            f"{job_id}; the result is corrupt or not that provider's"
        )
    return value


# ---------------------------------------------------------------------------- notices


class ResultNotice(BaseModel):
    """Where a provider uploaded its (encrypted) result of one job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["depin-result-notice/v1"] = RESULT_NOTICE_TYPE
    chain_id: Annotated[StrictInt, Field(ge=1, le=2**64 - 1)]
    market: StrictStr
    job_id: Annotated[StrictInt, Field(ge=0, le=2**256 - 1)]
    provider: StrictStr
    #: sha256 of the encrypted result artifact, 64 lowercase hex characters.
    artifact: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
    timestamp: Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]

    @field_validator("market", "provider")
    @classmethod
    def _address(cls, value: str) -> str:
        if not is_address(value):
            raise ValueError(f"expected a 0x-prefixed 20-byte address, got {value!r}")
        return to_checksum_address(value)

    def canonical_json(self) -> bytes:
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
        ).encode()


class SignedResultNotice(BaseModel):
    """A result notice and its EIP-191 signature (0x-prefixed hex). The wire format."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    notice: ResultNotice
    signature: StrictStr

    @classmethod
    def from_json(cls, data: bytes | str) -> SignedResultNotice:
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            problems = validation_problems(exc)
            raise ResultError(
                f"malformed result notice: {problems}; send "
                '{"notice": {...}, "signature": "0x..."} as sign_result_notice builds it'
            ) from None


def sign_result_notice(
    account: LocalAccount,
    *,
    chain_id: int,
    market: str,
    job_id: int,
    artifact: str,
    timestamp: int,
) -> SignedResultNotice:
    notice = ResultNotice(
        chain_id=chain_id,
        market=market,
        job_id=job_id,
        provider=account.address,
        artifact=artifact,
        timestamp=timestamp,
    )
    signed = account.sign_message(encode_defunct(primitive=notice.canonical_json()))
    return SignedResultNotice(notice=notice, signature="0x" + signed.signature.hex())


def verify_result_notice(signed: SignedResultNotice, *, chain_id: int, market: str) -> str:
    """The provider's checksummed address when the notice is for this deployment and signed by
    the provider it names; else ResultError."""
    notice = signed.notice
    if notice.chain_id != chain_id or notice.market != to_checksum_address(market):
        raise ResultError(
            f"the notice is for chain {notice.chain_id} market {notice.market}; this relayer "
            f"serves chain {chain_id} market {to_checksum_address(market)}"
        )
    try:
        signer = Account.recover_message(
            encode_defunct(primitive=notice.canonical_json()), signature=signed.signature
        )
    except Exception as exc:  # eth_keys raises several types for unusable signatures
        raise ResultError(
            f"the notice signature is unusable ({type(exc).__name__}); sign "
            "ResultNotice.canonical_json() with EIP-191"
        ) from None
    if signer != notice.provider:
        raise ResultError(
            f"the notice is signed by {signer}, not by provider {notice.provider}; sign it "
            "with the provider's own key"
        )
    return notice.provider
