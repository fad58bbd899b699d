"""Where depin keeps files (XDG) and how a wallet name finds its keystore."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from marketplace.protocol.errors import ConfigError
from marketplace.protocol.places import config_dir, data_dir, wallet_path


def test_the_xdg_variables_move_data_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert data_dir() == tmp_path / "home" / ".local" / "share" / "depin"
    assert config_dir() == tmp_path / "home" / ".config" / "depin"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert (data_dir(), config_dir()) == (tmp_path / "data" / "depin", tmp_path / "cfg" / "depin")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")  # invalid by the spec: ignored
    assert data_dir() == tmp_path / "home" / ".local" / "share" / "depin"


def test_a_wallet_name_is_a_keystore_in_the_wallet_dir(tmp_path: Path) -> None:
    (tmp_path / "alice.json").write_text("{}")
    assert wallet_path("alice", tmp_path, variable="X_DIR") == tmp_path / "alice.json"
    with pytest.raises(ConfigError, match=r"no wallet 'bob' in .*`depin wallet new --name bob`"):
        wallet_path("bob", tmp_path, variable="X_DIR")
    for bad in ("", "../alice", ".hidden"):
        with pytest.raises(ConfigError, match="is not a wallet name"):
            wallet_path(bad, tmp_path, variable="X_DIR")


def test_ape_alias_is_the_ape_accounts_keystore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path / "ape"))
    with pytest.raises(ConfigError, match="`ape accounts generate dev`"):
        wallet_path("ape:dev", tmp_path, variable="X_DIR")
    accounts = tmp_path / "ape" / "accounts"
    accounts.mkdir(parents=True)
    keystore = Account.encrypt(b"\x07" * 32, "pw", iterations=2)
    (accounts / "dev.json").write_text(json.dumps(keystore))
    assert wallet_path("ape:dev", tmp_path, variable="X_DIR") == accounts / "dev.json"
