"""Where depin keeps files on a machine, by the XDG base directory convention, and where a
wallet named on the command line lives.

    data      $XDG_DATA_HOME/depin    (~/.local/share/depin): wallets/, artifacts/, databases
    config    $XDG_CONFIG_HOME/depin  (~/.config/depin): config.toml

`--wallet NAME` is `<wallet dir>/NAME.json`, a keystore `depin wallet new|import` wrote;
`--wallet ape:ALIAS` is the Ape account ALIAS (`ape accounts generate|import`), whose keystore
is the same eth-account format in `$APE_DATA_FOLDER/accounts` (~/.ape/accounts).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from marketplace.protocol.errors import ConfigError

__all__ = [
    "APE_PREFIX",
    "ape_accounts_dir",
    "config_dir",
    "data_dir",
    "is_wallet_name",
    "wallet_path",
]

#: The prefix of a wallet name that means an Ape account.
APE_PREFIX: Final = "ape:"


def _base(variable: str, default: str) -> Path:
    value = os.environ.get(variable, "")
    # The XDG spec says a relative value is invalid and must be ignored.
    return Path(value) if value and Path(value).is_absolute() else Path.home() / default


def data_dir() -> Path:
    """Wallets, artifacts and databases: $XDG_DATA_HOME/depin."""
    return _base("XDG_DATA_HOME", ".local/share") / "depin"


def config_dir() -> Path:
    """The configuration file's directory: $XDG_CONFIG_HOME/depin."""
    return _base("XDG_CONFIG_HOME", ".config") / "depin"


def ape_accounts_dir() -> Path:
    """Where Ape keeps its accounts' keystores."""
    folder = os.environ.get("APE_DATA_FOLDER")
    return (Path(folder).expanduser() if folder else Path.home() / ".ape") / "accounts"


def is_wallet_name(name: str) -> bool:
    """Whether `name` can name a keystore file in a wallet directory (no path, not hidden)."""
    return bool(name) and "/" not in name and not name.startswith(".")


def wallet_path(name: str, wallet_dir: Path, *, variable: str) -> Path:
    """The existing keystore file of wallet `name` (see the module doc); `variable` is the
    setting that moves `wallet_dir`, for the message when there is none."""
    if name.startswith(APE_PREFIX):
        alias = name.removeprefix(APE_PREFIX)
        path = ape_accounts_dir() / f"{alias}.json"
        if not alias or not path.is_file():
            raise ConfigError(
                f"no Ape account {alias!r} in {path.parent}; create it with `ape accounts "
                f"generate {alias or 'ALIAS'}` (or `ape accounts import`), or set APE_DATA_FOLDER"
            )
        return path
    if not is_wallet_name(name):
        raise ConfigError(
            f"{name!r} is not a wallet name; give the NAME of `depin wallet new --name NAME`, "
            "ape:ALIAS for an Ape account, or a keystore file with --keystore"
        )
    path = wallet_dir / f"{name}.json"
    if not path.is_file():
        raise ConfigError(
            f"no wallet {name!r} in {wallet_dir}; create it with `depin wallet new --name "
            f"{name}`, or point {variable} at the directory that holds it"
        )
    return path
