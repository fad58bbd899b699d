"""Settings of the relayer's HTTP API, read from `DEPIN_API_*` environment variables.

    DEPIN_API_ARTIFACT_ROOT        artifact store directory (~/.local/share/depin/artifacts)
    DEPIN_API_MAX_ARTIFACT_BYTES   largest artifact accepted (67108864, 64 MiB)
    DEPIN_API_ARTIFACTS_URL        s3://BUCKET[/PREFIX] keeps artifacts in an S3-compatible store
                                   (with DEPIN_API_S3_ENDPOINT_URL, _S3_REGION, _S3_ACCESS_KEY,
                                   _S3_SECRET_KEY: marketplace.protocol.artifact_backend);
                                   empty: files under DEPIN_API_ARTIFACT_ROOT
    DEPIN_API_DEPLOYMENT_FILE      deployment JSON; supplies chain id and market when unset
    DEPIN_API_CHAIN_ID             chain the heartbeats must name
    DEPIN_API_MARKET_ADDRESS       JobMarket the heartbeats must name
    DEPIN_API_HEARTBEAT_MAX_SKEW   seconds a heartbeat's timestamp may differ from now (60)
    DEPIN_API_HEARTBEAT_INTERVAL   seconds between a provider's heartbeats (15)
    DEPIN_API_HEARTBEAT_MISSED     missed intervals after which a provider is not live (3)
    DEPIN_API_MAX_PROVIDERS        most providers whose last heartbeat is kept (100000)
    DEPIN_API_HOST, DEPIN_API_PORT where `python -m marketplace.api` listens (127.0.0.1:8000)

Without a chain id and market the artifact endpoints work and POST /heartbeats answers 503.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from eth_utils.address import is_address, to_checksum_address
from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from marketplace.protocol.artifact_backend import ArtifactBackendSettings
from marketplace.protocol.artifact_client import DEFAULT_MAX_ARTIFACT_BYTES
from marketplace.protocol.deployment import Deployment
from marketplace.protocol.heartbeat import (
    HEARTBEAT_INTERVAL,
    HEARTBEAT_MAX_SKEW,
    HEARTBEAT_MISSED,
)
from marketplace.protocol.places import data_dir

__all__ = ["ApiSettings"]


def _default_root() -> Path:
    return data_dir() / "artifacts"


class ApiSettings(ArtifactBackendSettings):
    """Configuration of `create_app`; every field has a `DEPIN_API_` environment variable."""

    model_config = SettingsConfigDict(env_prefix="DEPIN_API_", extra="forbid")

    #: Directory of the content-addressed artifact store (created if missing); with an S3
    #: store it holds the uploads and reads in progress.
    artifact_root: Path = Field(default_factory=_default_root)
    #: Largest artifact accepted, in bytes; larger uploads get 413.
    max_artifact_bytes: Annotated[int, Field(ge=1)] = DEFAULT_MAX_ARTIFACT_BYTES
    #: A deployment file (`depin devnet up` writes one); fills chain_id and market_address.
    deployment_file: Path | None = None
    #: Chain id heartbeats must be signed for.
    chain_id: Annotated[int, Field(ge=1)] | None = None
    #: JobMarket address heartbeats must be signed for.
    market_address: str | None = None
    #: Largest difference, in seconds, between a heartbeat's timestamp and the relayer's clock.
    heartbeat_max_skew: Annotated[int, Field(ge=1)] = HEARTBEAT_MAX_SKEW
    #: Seconds between two heartbeats of a provider.
    heartbeat_interval: Annotated[int, Field(ge=1)] = HEARTBEAT_INTERVAL
    #: A provider silent for this many intervals is not live.
    heartbeat_missed: Annotated[int, Field(ge=1)] = HEARTBEAT_MISSED
    #: Most providers whose last heartbeat is held in memory.
    max_providers: Annotated[int, Field(ge=1)] = 100_000
    #: Interface `python -m marketplace.api` binds.
    host: str = "127.0.0.1"
    #: Port `python -m marketplace.api` binds.
    port: Annotated[int, Field(ge=0, le=65535)] = 8000

    @field_validator("artifact_root")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("market_address")
    @classmethod
    def _check_market(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not is_address(value):
            raise ValueError(
                f"market_address must be the JobMarket's 0x-prefixed 20-byte address, got {value!r}"
            )
        return to_checksum_address(value)

    @model_validator(mode="after")
    def _from_deployment(self) -> ApiSettings:
        if self.deployment_file is not None:
            deployment = Deployment.load(self.deployment_file)
            if self.chain_id is None:
                self.chain_id = deployment.chain_id
            if self.market_address is None:
                self.market_address = to_checksum_address(deployment.market)
        return self
