"""The SDK's exceptions. Every one derives from DepinError and from the matching builtin, and
its message says what to do next. Contract reverts are decoded from the shipped ABIs."""

from __future__ import annotations

from functools import cache
from typing import Any

from eth_abi.abi import decode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from pydantic import ValidationError

from marketplace.protocol import abis


class DepinError(Exception):
    """Root of every error the depin-compute SDK raises."""


class ConfigError(DepinError, ValueError):
    """A setting, file or argument is unusable."""


class ChainError(DepinError, ConnectionError):
    """The RPC endpoint is unreachable or serves another chain."""


def validation_problems(exc: ValidationError) -> str:
    """pydantic's errors as one line: `field.path: message; ...`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


class TransactionFailed(DepinError, RuntimeError):
    """A transaction was mined but reverted without a decodable reason."""


# What a user should do about each contract error; the decoded arguments are shown beside it.
_HINTS: dict[str, str] = {
    "JobMarketUnexpectedState": "the job's state does not allow this; check `state(jobId)`",
    "JobMarketNotMatcher": "only a matcher may assign; the owner authorises one with setMatcher",
    "JobMarketNotRequester": "only the job's requester may do this; use the requester's key",
    "JobMarketAccountIdsExhausted": (
        "every account id of this market is taken; use an account that already has jobs or "
        "seats here, or deploy a new market"
    ),
    "JobMarketNotParticipant": "this key is not assigned to the job; sign as the assigned provider",
    "JobMarketInvalidReplicas": "replicas must be 1, 3 or 5 (odd, so a majority exists)",
    "JobMarketInvalidAmount": "units and max price must be non-zero and the collateral fit 96 bits",
    "JobMarketInvalidWindow": "pick a window between the minimum and the maximum shown",
    "JobMarketUnknownProfile": "use a determinism profile the ProviderRegistry defines",
    "JobMarketInvalidBatch": "pass non-empty arrays of equal length",
    "JobMarketWrongProviderCount": "assign exactly as many providers as the job needs",
    "JobMarketDuplicateProvider": "a provider appears once per job; pick distinct executors",
    "JobMarketProviderExcluded": (
        "this provider missed its deadline on the job or released it; pick another"
    ),
    "JobMarketRequesterAsProvider": "the requester cannot execute its own job; pick another",
    "JobMarketAuditStaffed": "the audit round has all its verifiers; nothing to staff",
    "JobMarketSeedNotReady": "the verifier draw needs the next block's hash; retry next block",
    "JobMarketOnlySelf": "internal batch entry point; call the single-item function instead",
    "JobMarketBatchItemOutOfGas": (
        "an item ran out of gas; send the batch with more gas or fewer items"
    ),
    "JobMarketAlreadyCommitted": (
        "this provider already committed a result to the job; a committed seat cannot be released"
    ),
    "JobMarketNothingToReveal": "commit first, or the reveal was already made",
    "JobMarketRevealMismatch": "reveal exactly the digest that was committed, from the same key",
    "JobMarketDeadlinePassed": "the deadline has passed; the job must be expired or finalized",
    "JobMarketDeadlineNotReached": "wait until the deadline shown has passed",
    "JobMarketAuditNotDrawable": "the draw needs the block after the commit; retry next block",
    "JobMarketInvalidParams": "fix the parameter named in the message",
    "JobMarketNothingToWithdraw": "nothing is credited to this account yet",
    "JobMarketZeroAddress": "pass a non-zero address",
    "ProviderRegistryUnauthorizedMarket": "only the JobMarket may call this",
    "ProviderRegistryMarketAlreadySet": "the market is set once, at deployment",
    "ProviderRegistryAlreadyRegistered": "already registered; use updateTerms to change terms",
    "ProviderRegistryNotRegistered": "register the provider first (`depin provider register`)",
    "ProviderRegistryInvalidTerms": (
        "give a non-zero price, max units >= 1 and profile bits the registry defines"
    ),
    "ProviderRegistryExecWindowTooShort": (
        "the job's exec window is below the provider's own minimum; pick another provider"
    ),
    "ProviderRegistryTooManyUnits": (
        "the job has more units than the provider accepts; pick another provider or split it"
    ),
    "ProviderRegistryZeroAmount": "pass a non-zero amount",
    "ProviderRegistryInsufficientStake": "stake more, or request less than the free stake shown",
    "ProviderRegistryUnbondPending": "cancel the pending unbond or withdraw it once unlocked",
    "ProviderRegistryNoUnbondPending": "request an unbond first",
    "ProviderRegistryUnbondLocked": "wait until the unlock time shown",
    "ProviderRegistryProviderUnbonding": "the provider is unbonding; it takes no new jobs",
    "ProviderRegistryProfileUnsupported": "the provider does not support the job's profile",
    "ProviderRegistryInsufficientVram": "the provider has less GPU memory than the job needs",
    "ProviderRegistryPriceTooHigh": "the provider asks more than the job's max price per unit",
    "ProviderRegistryInvalidProfile": "use a new non-zero descriptor; at most 64 profiles",
    "ProviderRegistryInvalidUnbondingPeriod": "choose a period within the bounds shown",
    "ERC20InsufficientAllowance": "approve at least the amount shown, or use a permit",
    "ERC20InsufficientBalance": "the account holds fewer tokens than needed; fund it first",
    "OwnableUnauthorizedAccount": "only the contract owner may do this",
}


def _canonical_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


@cache
def _error_table() -> dict[bytes, tuple[str, list[str], list[str]]]:
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for abi in abis.all_abis():
        for entry in abi:
            if entry["type"] != "error":
                continue
            types = [_canonical_type(p) for p in entry["inputs"]]
            selector = function_signature_to_4byte_selector(f"{entry['name']}({','.join(types)})")
            table[selector] = (entry["name"], types, [p["name"] for p in entry["inputs"]])
    return table


class ContractRevert(DepinError, RuntimeError):
    """A contract call reverted with a custom error from the shipped ABIs."""

    def __init__(self, name: str, values: dict[str, Any]) -> None:
        self.name = name
        self.values = values
        shown = ", ".join(f"{k}={_show(v)}" for k, v in values.items())
        hint = _HINTS.get(name, "see the contract's NatSpec for this error")
        super().__init__(f"{name}({shown}): {hint}")


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def decode_revert(data: bytes | str | None) -> ContractRevert | None:
    """The custom error encoded in `data`, or None if it matches no shipped ABI."""
    if data is None:
        return None
    raw = (
        bytes.fromhex(data[2:] if data.startswith("0x") else data)
        if isinstance(data, str)
        else data
    )
    if len(raw) < 4:
        return None
    entry = _error_table().get(raw[:4])
    if entry is None:
        return None
    name, types, names = entry
    values = [
        to_checksum_address(v) if t == "address" else v
        for t, v in zip(types, decode(types, raw[4:]), strict=True)
    ]
    return ContractRevert(name, dict(zip(names, values, strict=True)))
