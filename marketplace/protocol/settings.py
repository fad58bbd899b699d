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
"""

from __future__ import annotations

import os
import tomllib
import typing
from pathlib import Path
from typing import Any, Final

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from marketplace.protocol.errors import ConfigError
from marketplace.protocol.places import config_dir

__all__ = ["CONFIG_ENV", "DepinSettings", "config_file"]

#: The variable that names the configuration file.
CONFIG_ENV: Final = "DEPIN_CONFIG"
#: The top-level keys: settings that several roles share.
SHARED_KEYS: Final = frozenset({"rpc_url", "deployment_file", "relayer_url"})


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
        if strays:
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
