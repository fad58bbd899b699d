"""The settings base of every depin service and command: environment variables first, then a
TOML configuration file, then the defaults.

The file is the first that exists of `$DEPIN_CONFIG` (which must exist when set), `depin.toml`
in the working directory (a project's own), and `$XDG_CONFIG_HOME/depin/config.toml`
(~/.config/depin/config.toml). Top-level keys are the settings several roles share; a table per
role, named by its variable prefix (`DEPIN_REQUESTER_` reads `[requester]`), holds that role's
own and overrides the top level::

    rpc_url = "http://127.0.0.1:8545"
    deployment_file = "devnet/deployment.json"   # relative to this file
    relayer_url = "http://127.0.0.1:8700"

    [requester]
    wallet_dir = "~/wallets"

    [provider]
    queue = "gpu-0"
    heartbeat_interval = 5

A key that no role knows is an error naming the file, the table and the keys it may hold.

Databases are SQLAlchemy URLs; unless configured, the relayer's is `default_db_url()`, a SQLite
file in the data directory, and each provider agent's a SQLite file there named after it.
"""

from __future__ import annotations

import os
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Final

from eth_account.signers.local import LocalAccount
from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from marketplace.protocol.chain import FeePolicy
from marketplace.protocol.errors import ConfigError
from marketplace.protocol.keys import load_account
from marketplace.protocol.places import config_dir, data_dir
from marketplace.protocol.wakeup import ws_url_for

__all__ = [
    "CONFIG_ENV",
    "RELAYER_DB_FILE",
    "ChainSettings",
    "DepinSettings",
    "config_file",
    "default_db_url",
    "sqlite_url",
]

#: The variable that names the configuration file.
CONFIG_ENV: Final = "DEPIN_CONFIG"
#: The top-level keys: settings that several roles share.
SHARED_KEYS: Final = frozenset({"rpc_url", "ws_url", "deployment_file", "relayer_url"})
#: The relayer database's file name, in the data directory unless its URL is configured.
RELAYER_DB_FILE: Final = "relayer.sqlite3"


def _wei(gwei: float | None) -> int | None:
    return None if gwei is None else round(gwei * 10**9)


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite database file `path`."""
    return f"sqlite:///{path}"


def default_db_url() -> str:
    """The relayer database when none is configured. Read at each call, so a changed
    $XDG_DATA_HOME moves it."""
    return sqlite_url(data_dir() / RELAYER_DB_FILE)


def config_file() -> Path | None:
    """The configuration file in use, or None when there is none."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={named} is not a file; fix the path or unset it")
        return path
    for path in (Path("depin.toml"), config_dir() / "config.toml"):
        if path.is_file():
            return path
    return None


def _section(settings_cls: type[BaseSettings]) -> str:
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    return prefix.removeprefix("DEPIN_").rstrip("_").lower()


def _is_path(field: FieldInfo) -> bool:
    return Path in (field.annotation, *typing.get_args(field.annotation))


class ConfigFileSource(PydanticBaseSettingsSource):
    """The values `config_file()` gives one settings class (see the module doc)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._values = self._load(settings_cls)

    @staticmethod
    def _load(settings_cls: type[BaseSettings]) -> dict[str, Any]:
        path = config_file()
        if path is None:
            return {}
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the configuration file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML ({exc}); fix that line") from None
        section = _section(settings_cls)
        shared = {k: v for k, v in data.items() if not isinstance(v, dict)}
        unknown = set(shared) - SHARED_KEYS
        if unknown:
            raise ConfigError(
                f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; the top level "
                f"holds {', '.join(sorted(SHARED_KEYS))}, a role's own settings go in its table "
                "([requester], [provider], [relayer], [api])"
            )
        own = data.get(section, {})
        if not isinstance(own, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        fields = settings_cls.model_fields
        strays = set(own) - set(fields)
        if strays and settings_cls.model_config.get("extra") == "ignore":
            own = {k: v for k, v in own.items() if k in fields}  # a partial view of a role
        elif strays:
            raise ConfigError(
                f"{path}: unknown key(s) {', '.join(sorted(strays))} in [{section}]; it may hold "
                f"{', '.join(sorted(fields))}"
            )
        values = {k: v for k, v in shared.items() if k in fields} | own
        for name, value in values.items():
            if isinstance(value, str) and _is_path(fields[name]):
                given = Path(value).expanduser()
                values[name] = given if given.is_absolute() else path.parent / given
        return values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class DepinSettings(BaseSettings):
    """A service's settings: init arguments, then `DEPIN_<ROLE>_*` variables, then the
    configuration file, then the defaults."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, ConfigFileSource(settings_cls))


class ChainSettings(DepinSettings):
    """What every role that talks to the chain has: the node, the deployment and one key (a
    keystore with its password, or a hex private key)."""

    #: JSON-RPC endpoint of the chain the deployment lives on.
    rpc_url: str = "http://127.0.0.1:8545"
    #: WebSocket endpoint whose new-block notices wake the role's loops at once: empty takes
    #: `rpc_url` with its scheme swapped (ws://, wss://: most nodes serve both on one port),
    #: "off" polls only. Without one the loops read the chain every poll interval.
    ws_url: str = ""
    #: The deployment file naming the contracts.
    deployment_file: Path = Path("deployment.json")
    #: Encrypted JSON keystore (eth-account / geth format) of the role's key.
    keystore_file: Path | None = None
    #: Password of `keystore_file`.
    keystore_password: SecretStr | None = None
    #: The key as 0x-prefixed hex, instead of a keystore (devnets, tests).
    private_key: SecretStr | None = None

    #: The tip per gas, in gwei, of this role's transactions; empty asks the node.
    priority_fee_gwei: Annotated[float, Field(ge=0)] | None = None
    #: The most this role pays per gas, in gwei, tip included; empty: no ceiling.
    max_fee_gwei: Annotated[float, Field(gt=0)] | None = None
    #: Seconds a sent transaction may stay pending before it is replaced with higher fees.
    replace_after: Annotated[float, Field(gt=0)] = 30.0

    def fee_policy(self) -> FeePolicy:
        """How this role prices its transactions and replaces stuck ones."""
        return FeePolicy(
            priority_fee_wei=_wei(self.priority_fee_gwei),
            max_fee_wei=_wei(self.max_fee_gwei),
            replace_after=self.replace_after,
        )

    @field_validator("ws_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        if value not in ("", "off") and not value.startswith(("ws://", "wss://")):
            raise ValueError(
                f"{value!r} is not a WebSocket URL: give ws://host:port or wss://..., leave it "
                "empty to derive it from rpc_url, or 'off' to poll only"
            )
        return value

    def heads_url(self) -> str | None:
        """The WebSocket endpoint to follow new blocks at, or None to poll only."""
        return ws_url_for(self.rpc_url, self.ws_url)

    @field_validator("deployment_file", "keystore_file")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    def account(self) -> LocalAccount:
        """The key, from the keystore or the private key; errors name this role's variables."""
        return load_account(
            keystore_file=self.keystore_file,
            password=None
            if self.keystore_password is None
            else self.keystore_password.get_secret_value(),
            private_key=None if self.private_key is None else self.private_key.get_secret_value(),
            env_prefix=str(self.model_config.get("env_prefix", "")),
        )
