"""Settings of the relayer service, read from `DEPIN_RELAYER_*` environment variables.

    DEPIN_RELAYER_RPC_URL             JSON-RPC endpoint of the chain (http://127.0.0.1:8545)
    DEPIN_RELAYER_DEPLOYMENT_FILE     deployment JSON written by `depin devnet up` / `deploy`
    DEPIN_RELAYER_KEYSTORE_FILE       encrypted JSON keystore of the matcher key, with
    DEPIN_RELAYER_KEYSTORE_PASSWORD   its password; or instead
    DEPIN_RELAYER_PRIVATE_KEY         the matcher key as 0x-prefixed hex (devnets, tests)
    DEPIN_RELAYER_DB_URL              SQLAlchemy URL of the relayer database
                                      (sqlite in ~/.local/share/depin/relayer.sqlite3)
    DEPIN_RELAYER_CONFIRMATIONS       blocks left unapplied behind the head (1)
    DEPIN_RELAYER_POLL_INTERVAL       seconds between two cycles (1.0)
    DEPIN_RELAYER_MAX_BACKOFF         longest wait between two attempts while the RPC or the
                                      database is unavailable (10.0)
    DEPIN_RELAYER_MAX_BATCH           most jobs per transaction (50)
    DEPIN_RELAYER_MAX_SKIPS           times the contract may skip a keeper call on an unchanged
                                      job before the keeper leaves it out (3)
    DEPIN_RELAYER_REQUIRE_HEARTBEATS  match only providers with a recent heartbeat (true)
    DEPIN_RELAYER_HEARTBEAT_INTERVAL  seconds between a provider's heartbeats (15)
    DEPIN_RELAYER_HEARTBEAT_MISSED    missed intervals after which a provider is not live (3)
    DEPIN_RELAYER_API_HOST            interface `depin relayer run` serves its API on (127.0.0.1)
    DEPIN_RELAYER_API_PORT            port of that API (8700)
    DEPIN_RELAYER_ARTIFACT_ROOT       artifact store directory (~/.local/share/depin/artifacts)
    DEPIN_RELAYER_ARTIFACTS_URL       s3://BUCKET[/PREFIX]: artifacts in an S3-compatible store,
                                      with DEPIN_RELAYER_S3_ENDPOINT_URL, DEPIN_RELAYER_S3_REGION,
                                      DEPIN_RELAYER_S3_ACCESS_KEY, DEPIN_RELAYER_S3_SECRET_KEY
                                      (marketplace.protocol.artifact_backend); empty: files under
                                      DEPIN_RELAYER_ARTIFACT_ROOT

Exactly one key source is required by `RelayerSettings`: a keystore file with its password, or a
private key. `StoreSettings` reads only the database URL (for read-only commands). Like every
role's settings they also come from the configuration file's `[relayer]` table
(marketplace.protocol.settings); the heartbeat defaults are marketplace.protocol.heartbeat's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from marketplace.protocol.artifact_backend import ArtifactBackendSettings
from marketplace.protocol.heartbeat import HEARTBEAT_INTERVAL, HEARTBEAT_MISSED
from marketplace.protocol.places import data_dir
from marketplace.protocol.settings import ChainSettings, DepinSettings, default_db_url

__all__ = ["MAX_BATCH", "MAX_SKIPS", "RelayerSettings", "StoreSettings"]

#: Most jobs per transaction unless configured: past a few dozen a batch saves little more gas
#: per job (docs/gas.md), while a larger one only comes closer to the block gas limit.
MAX_BATCH: Final = 50
#: Skips of one keeper call on an unchanged job before it is left out; a skip can be a race
#: with another keeper, so one is not enough.
MAX_SKIPS: Final = 3


class StoreSettings(DepinSettings):
    """Where the relayer database lives; enough for read-only commands (`relayer status`)."""

    model_config = SettingsConfigDict(env_prefix="DEPIN_RELAYER_", extra="ignore")

    #: SQLAlchemy URL of the relayer database (created when missing).
    db_url: str = Field(default_factory=default_db_url)

    def sqlite_path(self) -> Path | None:
        """The database file of a `sqlite:///` URL (None for other databases or in-memory)."""
        prefix = "sqlite:///"
        if self.db_url.startswith(prefix) and self.db_url != prefix + ":memory:":
            rest = self.db_url[len(prefix) :]
            return Path(rest) if rest else None
        return None


class RelayerSettings(ChainSettings, StoreSettings, ArtifactBackendSettings):
    """Configuration of the relayer service; every field has a `DEPIN_RELAYER_` variable."""

    model_config = SettingsConfigDict(env_prefix="DEPIN_RELAYER_", extra="forbid")

    #: Blocks left unapplied behind the head (reorg safety); 0 follows the head.
    confirmations: Annotated[int, Field(ge=0)] = 1
    #: Seconds between two cycles.
    poll_interval: Annotated[float, Field(gt=0)] = 1.0
    #: Longest wait, in seconds, between two attempts while the RPC or the database is down;
    #: bounds how long the relayer takes to notice a dependency is back.
    max_backoff: Annotated[float, Field(gt=0)] = 10.0
    #: Most jobs per transaction.
    max_batch: Annotated[int, Field(ge=1)] = MAX_BATCH
    #: Skips by the contract of one keeper call on an unchanged job before it is left out.
    max_skips: Annotated[int, Field(ge=1)] = MAX_SKIPS
    #: When true only providers live in the liveness book (or the store's heartbeats) are matched.
    require_heartbeats: bool = True
    #: Seconds between two heartbeats of a provider.
    heartbeat_interval: Annotated[int, Field(ge=1)] = HEARTBEAT_INTERVAL
    #: A provider silent for this many intervals is not live.
    heartbeat_missed: Annotated[int, Field(ge=1)] = HEARTBEAT_MISSED
    #: Interface the HTTP API (artifacts, heartbeats, jobs, metrics) binds.
    api_host: str = "127.0.0.1"
    #: Port of the HTTP API; 0 picks a free one.
    api_port: Annotated[int, Field(ge=0, le=65535)] = 8700
    #: Directory of the API's content-addressed artifact store (created if missing); with an S3
    #: store (`artifacts_url`) it holds the uploads and reads in progress.
    artifact_root: Path = Field(default_factory=lambda: data_dir() / "artifacts")

    @field_validator("artifact_root")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _one_key(self) -> RelayerSettings:
        has_keystore = self.keystore_file is not None
        has_key = self.private_key is not None
        if has_keystore == has_key:
            raise ValueError(
                "give the matcher key exactly one way: DEPIN_RELAYER_KEYSTORE_FILE with "
                "DEPIN_RELAYER_KEYSTORE_PASSWORD, or DEPIN_RELAYER_PRIVATE_KEY"
                + (" (both are set; unset one)" if has_key else " (neither is set)")
            )
        if has_keystore and self.keystore_password is None:
            raise ValueError(
                "DEPIN_RELAYER_KEYSTORE_FILE needs DEPIN_RELAYER_KEYSTORE_PASSWORD to decrypt it"
            )
        return self

    @property
    def heartbeat_window(self) -> int:
        """Seconds since its last heartbeat after which a provider is not live."""
        return self.heartbeat_interval * self.heartbeat_missed

    @property
    def backoff_limit(self) -> float:
        """The longest wait between attempts during an outage: `max_backoff`, never shorter
        than one cycle."""
        return max(self.poll_interval, self.max_backoff)
