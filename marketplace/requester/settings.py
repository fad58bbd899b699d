"""Settings of the requester SDK and the `depin job` / `depin wallet` commands, read from
`DEPIN_REQUESTER_*` variables.

    DEPIN_REQUESTER_RPC_URL            JSON-RPC endpoint of the chain (http://127.0.0.1:8545)
    DEPIN_REQUESTER_DEPLOYMENT_FILE    deployment JSON (deployment.json)
    DEPIN_REQUESTER_RELAYER_URL        relayer API: artifacts, jobs, result notices
                                       (http://127.0.0.1:8700)
    DEPIN_REQUESTER_KEYSTORE_FILE      encrypted JSON keystore of the wallet, with
    DEPIN_REQUESTER_KEYSTORE_PASSWORD  its password; or instead
    DEPIN_REQUESTER_PRIVATE_KEY        the key as 0x-prefixed hex (devnets, tests)
    DEPIN_REQUESTER_WALLET_DIR         where `depin wallet new|import` put keystores
                                       (~/.local/share/depin/wallets)
    DEPIN_REQUESTER_POLL_INTERVAL      seconds between two polls of `wait` (1.0)
    DEPIN_REQUESTER_SHARD_DIR          where sharded jobs' groups are kept
                                       (~/.local/share/depin/shards)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from marketplace.protocol.places import data_dir, wallet_path
from marketplace.protocol.settings import ChainSettings

__all__ = ["ENV_PREFIX", "RequesterSettings", "default_shard_dir", "default_wallet_dir"]

ENV_PREFIX = "DEPIN_REQUESTER_"


def default_wallet_dir() -> Path:
    """Where wallets live unless told otherwise (beside the other depin data)."""
    return data_dir() / "wallets"


def default_shard_dir() -> Path:
    """Where shard groups live unless told otherwise (beside the other depin data)."""
    return data_dir() / "shards"


class RequesterSettings(ChainSettings):
    """Configuration of one requester; every field has a `DEPIN_REQUESTER_` variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    relayer_url: str = "http://127.0.0.1:8700"
    wallet_dir: Path = Field(default_factory=default_wallet_dir)
    poll_interval: Annotated[float, Field(gt=0)] = 1.0
    shard_dir: Path = Field(default_factory=default_shard_dir)

    @field_validator("wallet_dir", "shard_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    def wallet_path(self, name: str) -> Path:
        """The keystore file of wallet `name`: NAME.json in `wallet_dir`, or an Ape account
        as ape:ALIAS (see `marketplace.protocol.places`)."""
        return wallet_path(name, self.wallet_dir, variable=f"{ENV_PREFIX}WALLET_DIR")
