"""The configuration file: where it is found, what it may hold, and its place among the
sources (init arguments, then variables, then the file, then defaults)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from marketplace.api.settings import ApiSettings
from marketplace.protocol.errors import ConfigError
from marketplace.protocol.heartbeat import (
    HEARTBEAT_INTERVAL,
    HEARTBEAT_MAX_SKEW,
    HEARTBEAT_MISSED,
)
from marketplace.protocol.settings import config_file, default_db_url
from marketplace.relayer.settings import RelayerSettings, StoreSettings
from marketplace.requester.settings import RequesterSettings
from provider.settings import ProviderSettings

#: A matcher key for settings that need one (never used on a chain).
KEY = "0x" + "11" * 32


@pytest.fixture(autouse=True)
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No configuration but the test's own: a bare working directory and config home, and
    none of the caller's DEPIN_ variables."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in list(os.environ):
        if name.startswith("DEPIN_"):
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CONFIG = """
rpc_url = "http://10.0.0.5:8545"
deployment_file = "chain/deployment.json"

[requester]
relayer_url = "http://10.0.0.6:8700"

[provider]
queue = "gpu-0"
rpc_url = "http://10.0.0.7:8545"
"""


def test_the_shared_keys_and_each_roles_table(tmp_path: Path) -> None:
    path = write(tmp_path / "xdg" / "depin" / "config.toml", CONFIG)
    assert config_file() == path
    req = RequesterSettings()
    assert req.rpc_url == "http://10.0.0.5:8545" and req.relayer_url == "http://10.0.0.6:8700"
    # A relative path is relative to the file, not to wherever the command runs.
    assert req.deployment_file == path.parent / "chain" / "deployment.json"
    prov = ProviderSettings()
    assert (prov.queue, prov.rpc_url) == ("gpu-0", "http://10.0.0.7:8545")  # its table wins
    # A role with no table takes the shared keys it has, the defaults for the rest.
    assert StoreSettings().db_url == default_db_url()


def test_variables_and_arguments_win_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "xdg" / "depin" / "config.toml", CONFIG)
    monkeypatch.setenv("DEPIN_PROVIDER_QUEUE", "from-env")
    assert ProviderSettings().queue == "from-env"
    assert ProviderSettings(queue="from-option").queue == "from-option"


def test_a_project_file_comes_before_the_users_and_depin_config_before_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "xdg" / "depin" / "config.toml", 'rpc_url = "http://user:1"\n')
    write(tmp_path / "depin.toml", 'rpc_url = "http://project:1"\n')
    assert RequesterSettings().rpc_url == "http://project:1"
    named = write(tmp_path / "elsewhere.toml", 'rpc_url = "http://named:1"\n')
    monkeypatch.setenv("DEPIN_CONFIG", str(named))
    assert RequesterSettings().rpc_url == "http://named:1"
    monkeypatch.setenv("DEPIN_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"DEPIN_CONFIG=.*missing\.toml is not a file"):
        RequesterSettings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('rpc_url = "x"\nqueue = "q"\n', r"unknown top-level key\(s\) queue; the top level holds"),
        ('[requester]\nqueue = "q"\n', r"unknown key\(s\) queue in \[requester\]; it may hold"),
        ("rpc_url = \n", "is not valid TOML"),
        ('requester = "x"\n', r"unknown top-level key\(s\) requester"),
    ],
)
def test_a_bad_file_is_refused_naming_the_fix(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path / "depin.toml", text)
    with pytest.raises(ConfigError, match=message):
        RequesterSettings()


def test_a_partial_view_of_a_role_reads_its_part_of_the_table(tmp_path: Path) -> None:
    write(tmp_path / "depin.toml", '[relayer]\ndb_url = "sqlite:///x.db"\nconfirmations = 4\n')
    assert StoreSettings().db_url == "sqlite:///x.db"


def test_every_chain_role_names_its_own_variables_for_a_missing_key() -> None:
    for settings, prefix in (
        (RequesterSettings(), "DEPIN_REQUESTER_"),
        (ProviderSettings(), "DEPIN_PROVIDER_"),
    ):
        with pytest.raises(
            ConfigError, match=f"{prefix}KEYSTORE_FILE with {prefix}KEYSTORE_PASSWORD"
        ):
            settings.model_copy(update={"private_key": None, "keystore_file": None}).account()


def test_every_role_defaults_to_the_same_heartbeat_policy() -> None:
    relayer, api, provider = RelayerSettings(private_key=KEY), ApiSettings(), ProviderSettings()
    assert (relayer.heartbeat_interval, relayer.heartbeat_missed) == (
        HEARTBEAT_INTERVAL,
        HEARTBEAT_MISSED,
    )
    assert (api.heartbeat_interval, api.heartbeat_missed) == (HEARTBEAT_INTERVAL, HEARTBEAT_MISSED)
    assert provider.heartbeat_interval == HEARTBEAT_INTERVAL
    assert api.heartbeat_max_skew == HEARTBEAT_MAX_SKEW
    assert relayer.heartbeat_window == HEARTBEAT_INTERVAL * HEARTBEAT_MISSED


def test_the_relayer_reads_its_table_and_its_variables_over_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path / "depin.toml",
        "[relayer]\nmax_batch = 3\nmax_skips = 5\nheartbeat_interval = 7\nheartbeat_missed = 9\n"
        "poll_interval = 4.0\nmax_backoff = 2.0\n",
    )
    monkeypatch.setenv("DEPIN_RELAYER_HEARTBEAT_MISSED", "2")
    settings = RelayerSettings(private_key=KEY)
    assert (settings.max_batch, settings.max_skips) == (3, 5)
    assert (settings.heartbeat_interval, settings.heartbeat_missed) == (7, 2)
    assert settings.heartbeat_window == 14
    # A backoff shorter than one cycle would retry faster during an outage than when all is well.
    assert settings.backoff_limit == 4.0


def test_one_default_relayer_database_in_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    file = tmp_path / "data" / "depin" / "relayer.sqlite3"
    assert default_db_url() == f"sqlite:///{file}"
    assert StoreSettings().db_url == default_db_url()
    assert RelayerSettings(private_key=KEY).sqlite_path() == file
