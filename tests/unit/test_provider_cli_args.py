"""`depin provider` without a chain: token amounts, profile masks, and settings errors that stop a
command before it touches the chain or starts a process."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from marketplace.cli.main import app
from marketplace.cli.provider import profile_mask, profile_names
from marketplace.protocol.errors import ConfigError
from marketplace.protocol.tokens import format_tokens, parse_tokens

TOKEN = 10**18
PROFILES = ["torch-2.13.0/cpu/float32/deterministic", "torch-2.13.0/cuda/float32/deterministic"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("DEPIN_PROVIDER_")]:
        monkeypatch.delenv(name)


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["provider", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("1000", 1000 * TOKEN),
        ("0.5", TOKEN // 2),
        ("1_000.25", 1000 * TOKEN + TOKEN // 4),
        ("0.000000000000000001", 1),
        (" 2 ", 2 * TOKEN),
        ("1e3", 1000 * TOKEN),
    ],
)
def test_parse_tokens_reads_whole_tokens_with_decimals(text: str, units: int) -> None:
    assert parse_tokens(text) == units


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("abc", "not a number"),
        ("", "not a number"),
        ("-1", "positive"),
        ("0", "positive"),
        ("nan", "positive"),
        ("inf", "positive"),
        ("0.0000000000000000001", "more than 18 decimals"),
        (str(2**96), "exceeds"),
    ],
)
def test_parse_tokens_rejects_unusable_amounts(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_tokens(text)


@pytest.mark.parametrize(
    ("units", "text"),
    [(0, "0"), (TOKEN, "1"), (TOKEN // 2, "0.5"), (1, "0.000000000000000001"), (-TOKEN, "-1")],
)
def test_format_tokens_is_exact_and_trims_zeros(units: int, text: str) -> None:
    assert format_tokens(units) == text
    if units > 0:
        assert parse_tokens(text) == units


def test_profile_mask_uses_deployment_positions_as_ids() -> None:
    assert profile_mask([PROFILES[0]], PROFILES) == 0b01
    assert profile_mask(PROFILES, PROFILES) == 0b11
    assert profile_names(0b10, PROFILES) == [PROFILES[1]]
    assert profile_names(0b101, PROFILES) == [PROFILES[0], "#2"]


def test_profile_mask_names_the_defined_profiles_when_one_is_unknown() -> None:
    with pytest.raises(ConfigError, match="defines no profile 'torch-9/tpu'") as info:
        profile_mask(["torch-9/tpu"], PROFILES)
    assert PROFILES[0] in str(info.value)


def test_help_marks_non_honest_behaviours_as_test_aids() -> None:
    code, out, _ = _run("run", "--help")
    assert code == 0
    assert "TEST AIDS" in out and "slashed" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "--confirmations", "-1"], "DEPIN_PROVIDER_CONFIRMATIONS / --confirmations"),
        (["run", "--behavior", "greedy"], "DEPIN_PROVIDER_BEHAVIOR / --behavior"),
        (["run", "--queue", "bad queue"], "DEPIN_PROVIDER_QUEUE / --queue"),
        (["worker", "--loglevel", "loud"], "--loglevel 'loud'"),
        (["worker", "--queue", "bad queue"], "DEPIN_PROVIDER_QUEUE / --queue"),
        (["worker", "--concurrency", "2000"], "DEPIN_PROVIDER_CAPACITY / --concurrency"),
        (["unbond"], "give an AMOUNT to unbond, or --cancel"),
        (["unbond", "5", "--cancel"], "give an AMOUNT to unbond, or --cancel"),
        (["withdraw", "--earnings-only", "--stake-only"], "exclude each other"),
        (["status", "--address", "0x1234"], "is not an address"),
        (["stake", "1.5x"], "not a number"),
        (["register", "--price", "0"], "positive"),
    ],
)
def test_bad_options_fail_with_one_error_line(args: list[str], says: str) -> None:
    code, out, err = _run(*args)
    assert code == 1, out
    assert err.startswith("error: ") and says in err
    assert "Traceback" not in err


def test_missing_key_names_both_ways_to_give_it() -> None:
    code, _, err = _run("run")
    assert code == 1
    assert "DEPIN_PROVIDER_PRIVATE_KEY" in err and "DEPIN_PROVIDER_KEYSTORE_FILE" in err


def test_parse_tokens_takes_zero_only_when_allowed() -> None:
    assert parse_tokens("0", allow_zero=True) == 0
    assert parse_tokens("0.1", allow_zero=True) == 10**17  # exact: never through a float
    with pytest.raises(ConfigError, match="must be a positive number"):
        parse_tokens("0")
    with pytest.raises(ConfigError, match="must be a positive or zero number"):
        parse_tokens("-1", allow_zero=True)
