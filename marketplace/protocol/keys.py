"""Keys of services and wallets: encrypted JSON keystores (eth-account / geth format) or a hex
private key from the environment.

Every service (relayer, provider agent) and the CLI read keys through `load_account`, so the
messages that name the fix are the same everywhere; `env_prefix` puts the right variable names
in them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address

from marketplace.protocol.errors import ConfigError

__all__ = ["keystore_address", "load_account", "load_keystore", "write_keystore"]


def load_account(
    *,
    keystore_file: Path | None,
    password: str | None,
    private_key: str | None,
    env_prefix: str,
) -> LocalAccount:
    """The key given either as a keystore file with its password or as a hex private key."""
    if (keystore_file is None) == (private_key is None):
        raise ConfigError(
            f"give the key exactly one way: {env_prefix}KEYSTORE_FILE with "
            f"{env_prefix}KEYSTORE_PASSWORD, or {env_prefix}PRIVATE_KEY"
            + (" (both are set; unset one)" if private_key is not None else " (neither is set)")
        )
    if private_key is not None:
        try:
            account: LocalAccount = Account.from_key(private_key)
        except Exception as exc:
            raise ConfigError(
                f"{env_prefix}PRIVATE_KEY is not a usable key ({type(exc).__name__}); "
                "give the 32-byte key as 0x-prefixed hex"
            ) from None
        return account
    assert keystore_file is not None
    if password is None:
        raise ConfigError(
            f"{env_prefix}KEYSTORE_FILE needs {env_prefix}KEYSTORE_PASSWORD to decrypt it"
        )
    # The password may come from the variable although the keystore came from --wallet: say
    # both ways of giving the right one.
    return load_keystore(
        keystore_file,
        password,
        hint=f"the password: --password-file on the command line, or {env_prefix}KEYSTORE_PASSWORD",
    )


def load_keystore(path: Path, password: str, *, hint: str = "the password") -> LocalAccount:
    """Decrypts the keystore at `path`."""
    try:
        keystore = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no keystore at {path}; create one with `depin wallet new`") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path} is not a JSON keystore ({exc}); point at an encrypted eth-account keystore"
        ) from None
    try:
        key = Account.decrypt(keystore, password)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot decrypt {path} ({exc}); check {hint}") from None
    account: LocalAccount = Account.from_key(key)
    return account


def keystore_address(path: Path) -> str:
    """The checksummed address a keystore names, read without its password (geth keystores,
    Ape's included, carry it in clear)."""
    try:
        address = json.loads(path.read_text()).get("address")
    except FileNotFoundError:
        raise ConfigError(f"no keystore at {path}; create one with `depin wallet new`") from None
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a JSON keystore ({exc})") from None
    if not isinstance(address, str) or not is_address(address):
        raise ConfigError(f"{path} names no address; give the password so the key itself tells it")
    return str(to_checksum_address(address))


def write_keystore(
    account: LocalAccount, password: str, path: Path, *, iterations: int | None = None
) -> Path:
    """Writes `account` encrypted with `password` (scrypt) to `path`, readable by its owner only.

    Refuses to overwrite an existing file, so no key is ever lost to a typo."""
    if path.exists():
        raise ConfigError(f"{path} exists; choose another file name or move the old keystore")
    path.parent.mkdir(parents=True, exist_ok=True)
    keystore = Account.encrypt(account.key, password, iterations=iterations)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(keystore, f)
    return path
