"""A job's verified result, as `Requester.result` returns it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ConfigDict, computed_field, field_serializer

from marketplace.requester.wire import WireModel

__all__ = ["JobResult", "ShardedResult"]


class JobResult(WireModel):
    """A decrypted result whose digest matched its provider's on-chain commitment.

    Its JSON form describes the outputs (dtype and shape per name) rather than carrying them:
    they are written to a file (`path`) or read here from `outputs`."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    json_keys = ("job_id", "ok", "provider", "digest", "failure", "message", "outputs")

    job_id: int
    provider: str
    digest: bytes
    outputs: Mapping[str, np.ndarray[Any, Any]]
    #: Failure code of a job that could not run as specified ("" when it ran).
    failure: str = ""
    message: str = ""
    #: Where the outputs were written (None when not asked, or for a failed job).
    path: Path | None = None
    #: (provider, reason) of every announced result that did not verify.
    rejected: tuple[tuple[str, str], ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.failure

    @field_serializer("digest", when_used="json")
    def _digest_hex(self, digest: bytes) -> str:
        return "0x" + digest.hex()

    @field_serializer("failure", "message", when_used="json")
    def _none_when_empty(self, text: str) -> str | None:
        return text or None

    @field_serializer("outputs", when_used="json")
    def _shapes(self, outputs: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, dict[str, Any]]:
        return {
            name: {"dtype": str(a.dtype), "shape": list(a.shape)}
            for name, a in sorted(outputs.items())
        }

    @field_serializer("rejected", when_used="json")
    def _rejections(self, rejected: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
        return [{"provider": p, "reason": r} for p, r in rejected]


class ShardedResult(WireModel):
    """A shard group's results, each verified against its own job's commitment, merged in
    shard order (see `marketplace.requester.shard`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    json_keys = ("group", "job_ids", "outputs", "unmerged", "path")

    group: int
    job_ids: tuple[int, ...]
    #: Every output with a first dimension, shards concatenated along it.
    outputs: Mapping[str, np.ndarray[Any, Any]]
    #: Outputs that cannot be concatenated (no first dimension): read them per shard.
    unmerged: tuple[str, ...] = ()
    shards: tuple[JobResult, ...] = ()
    path: Path | None = None

    @field_serializer("outputs", when_used="json")
    def _shapes(self, outputs: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, dict[str, Any]]:
        return {
            name: {"dtype": str(a.dtype), "shape": list(a.shape)}
            for name, a in sorted(outputs.items())
        }
