"""The configuration file: where it is found, what it may hold, and its place among the
sources (init arguments, then variables, then the file, then defaults)."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.protocol.errors import ConfigError
from marketplace.protocol.settings import config_file
from marketplace.relayer.settings import StoreSettings, default_db_url
from marketplace.requester.settings import RequesterSettings
from provider.settings import ProviderSettings


@pytest.fixture(autouse=True)
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No configuration but the test's own: a bare working directory and config home."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("DEPIN_CONFIG", raising=False)
    for name in ("RPC_URL", "DEPLOYMENT_FILE", "RELAYER_URL", "QUEUE", "WALLET_DIR"):
        monkeypatch.delenv(f"DEPIN_REQUESTER_{name}", raising=False)
        monkeypatch.delenv(f"DEPIN_PROVIDER_{name}", raising=False)


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
