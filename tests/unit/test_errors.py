"""decode_revert: custom errors decoded from the shipped ABIs, with a hint in the message."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from marketplace.protocol import abis, errors
from marketplace.protocol.errors import (
    ChainError,
    ConfigError,
    ContractRevert,
    DepinError,
    TransactionFailed,
    decode_revert,
)

REQUESTER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def _encoded(signature: str, types: list[str], values: list[object]) -> bytes:
    """Revert data as the EVM returns it: 4-byte selector of `signature`, then the arguments."""
    return keccak(text=signature)[:4] + encode(types, values)


def test_decodes_a_job_market_error_with_its_hint() -> None:
    data = _encoded(
        "JobMarketDeadlineNotReached(uint256,uint32)", ["uint256", "uint32"], [42, 1234]
    )
    err = decode_revert(data)
    assert isinstance(err, ContractRevert)
    assert err.name == "JobMarketDeadlineNotReached"
    assert err.values == {"jobId": 42, "deadline": 1234}
    assert str(err) == (
        "JobMarketDeadlineNotReached(jobId=42, deadline=1234): "
        + errors._HINTS["JobMarketDeadlineNotReached"]
    )


def test_decodes_hex_strings_with_and_without_prefix() -> None:
    data = _encoded("JobMarketNotMatcher(address)", ["address"], [REQUESTER])
    for form in (data, "0x" + data.hex(), data.hex()):
        err = decode_revert(form)
        assert err is not None
        assert err.name == "JobMarketNotMatcher"
        assert err.values["caller"].lower() == REQUESTER.lower()
        assert errors._HINTS["JobMarketNotMatcher"] in str(err)


def test_decodes_an_enum_argument_as_uint8() -> None:
    sig = "JobMarketUnexpectedState(uint256,uint8,uint256)"
    err = decode_revert(_encoded(sig, ["uint256", "uint8", "uint256"], [3, 6, 0b10]))
    assert err is not None
    assert err.values == {"jobId": 3, "current": 6, "allowed": 2}


def test_decodes_a_string_argument() -> None:
    sig = "JobMarketInvalidParams(string)"
    err = decode_revert(_encoded(sig, ["string"], ["feeBps above 1000"]))
    assert err is not None
    assert err.values == {"reason": "feeBps above 1000"}
    assert "reason=feeBps above 1000" in str(err)


def test_decodes_an_error_without_arguments() -> None:
    err = decode_revert(keccak(text="ProviderRegistryZeroAmount()")[:4])
    assert err is not None
    assert (err.name, err.values) == ("ProviderRegistryZeroAmount", {})
    assert (
        str(err) == "ProviderRegistryZeroAmount(): " + errors._HINTS["ProviderRegistryZeroAmount"]
    )


def test_decodes_an_openzeppelin_error_from_the_token_abi() -> None:
    sig = "ERC20InsufficientBalance(address,uint256,uint256)"
    err = decode_revert(_encoded(sig, ["address", "uint256", "uint256"], [REQUESTER, 5, 10**18]))
    assert err is not None
    assert err.name == "ERC20InsufficientBalance"
    assert (err.values["balance"], err.values["needed"]) == (5, 10**18)
    assert "fund it first" in str(err)


def test_error_without_a_hint_points_at_the_natspec() -> None:
    err = decode_revert(keccak(text="ReentrancyGuardReentrantCall()")[:4])
    assert err is not None
    assert str(err) == "ReentrancyGuardReentrantCall(): see the contract's NatSpec for this error"


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",
        "0x",
        b"\x01\x02\x03",
        "0x010203",
        keccak(text="NoSuchError(uint256)")[:4] + encode(["uint256"], [1]),
        # Error(string), the require-message revert, is not a custom error of the ABIs
        keccak(text="Error(string)")[:4] + encode(["string"], ["nope"]),
    ],
)
def test_unknown_or_short_data_is_none(data: bytes | str | None) -> None:
    assert decode_revert(data) is None


def test_every_project_error_has_a_hint() -> None:
    names = {
        entry["name"]
        for abi in abis.all_abis()
        for entry in abi
        if entry["type"] == "error" and entry["name"].startswith(("JobMarket", "ProviderRegistry"))
    }
    assert names, "the shipped ABIs declare the project's errors"
    assert names <= set(errors._HINTS)


def test_exception_hierarchy() -> None:
    assert issubclass(ConfigError, DepinError) and issubclass(ConfigError, ValueError)
    assert issubclass(ChainError, DepinError) and issubclass(ChainError, ConnectionError)
    assert issubclass(TransactionFailed, DepinError) and issubclass(TransactionFailed, RuntimeError)
    assert issubclass(ContractRevert, DepinError) and issubclass(ContractRevert, RuntimeError)
