"""Deploying the three contracts and the deployment file that points every service at them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3

from marketplace.protocol import artifacts
from marketplace.protocol.chain import Signer
from marketplace.protocol.errors import ChainError, ConfigError

# Determinism profiles defined at deployment, in id order. A profile names everything that
# must match for two executions to be compared bit for bit (docs/protocol.md).
DEFAULT_PROFILES: tuple[str, ...] = (
    "torch-2.13.0/cpu/float32/deterministic",
    "torch-2.13.0/cuda/float32/deterministic",
)

DAY = 86_400


@dataclass(frozen=True)
class MarketParams:
    """JobMarket parameters (IJobMarket.Params), in contract field order."""

    fee_bps: int = 250
    audit_share_bps: int = 5_000
    audit_bps: int = 1_000
    requester_share_bps: int = 5_000
    reward_share_bps: int = 3_000
    verifiers: int = 3
    collateral_multiple: int = 2
    challenge_window: int = 600
    verifier_assign_window: int = 600
    reveal_window: int = 600
    max_accept_window: int = DAY
    max_exec_window: int = DAY
    reassign_window: int = 1_800
    challenge_bond: int = 10 * 10**18

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(asdict(self).values())

    def max_job_lifetime(self) -> int:
        return (
            self.max_accept_window
            + 3 * self.max_exec_window
            + self.reassign_window
            + self.challenge_window
            + self.verifier_assign_window
            + self.reveal_window
        )


@dataclass(frozen=True)
class Deployment:
    """Where the contracts live: written by `deploy`, read by every service and CLI."""

    chain_id: int
    token: str
    registry: str
    market: str
    block: int
    deployer: str
    profiles: list[str] = field(default_factory=lambda: list(DEFAULT_PROFILES))

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Deployment:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except FileNotFoundError:
            raise ConfigError(
                f"no deployment file at {path}; run `depin devnet up` or pass the file of the "
                "chain you use"
            ) from None
        except (json.JSONDecodeError, TypeError) as exc:
            raise ConfigError(f"{path} is not a deployment file ({exc}); regenerate it") from exc


def profile_descriptor(name: str) -> bytes:
    """The on-chain descriptor of a determinism profile: keccak256 of its name."""
    return keccak(text=name)


def deploy(
    w3: Web3,
    deployer: LocalAccount,
    *,
    treasury: str | None = None,
    matchers: tuple[str, ...] = (),
    params: MarketParams | None = None,
    unbonding_period: int | None = None,
    profiles: tuple[str, ...] = DEFAULT_PROFILES,
    write_to: Path | None = None,
) -> Deployment:
    """Deploys ComputeToken, ProviderRegistry and JobMarket owned by `deployer`, links them,
    defines `profiles` and authorises `matchers`; writes the deployment file to `write_to` when
    given. The unbonding period defaults to twice the longest job lifetime plus a day."""
    params = params or MarketParams()
    period = unbonding_period or 2 * params.max_job_lifetime() + DAY
    signer = Signer(w3, deployer)
    owner = deployer.address
    start_block = w3.eth.block_number

    def create(name: str, *args: object) -> str:
        art = artifacts.load(name)
        factory = w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        receipt = signer.transact(factory.constructor(*args))
        address = receipt["contractAddress"]
        if address is None:
            raise ChainError(f"deploying {name} produced no contract address; check the node")
        return to_checksum_address(address)

    token = create("ComputeToken", owner)
    registry = create("ProviderRegistry", token, owner, period)
    market = create("JobMarket", token, registry, owner, treasury or owner, params.as_tuple())
    reg = w3.eth.contract(
        address=to_checksum_address(registry), abi=artifacts.load("ProviderRegistry").abi
    )
    mkt = w3.eth.contract(address=to_checksum_address(market), abi=artifacts.load("JobMarket").abi)
    signer.transact(reg.functions.setMarket(market))
    for name in profiles:
        signer.transact(reg.functions.addProfile(profile_descriptor(name)))
    for matcher in matchers:
        signer.transact(mkt.functions.setMatcher(to_checksum_address(matcher), True))
    deployment = Deployment(
        chain_id=w3.eth.chain_id,
        token=token,
        registry=registry,
        market=market,
        block=start_block + 1,
        deployer=owner,
        profiles=list(profiles),
    )
    if write_to is not None:
        deployment.write(write_to)
    return deployment
