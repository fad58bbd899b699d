"""Deploying the contracts (MarketLib linked into JobMarket) and the deployment file that
points every service at them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3

from marketplace.protocol import abis
from marketplace.protocol.chain import Signer, connect
from marketplace.protocol.errors import ChainError, ConfigError
from marketplace.protocol.hashing import escrow_of

# Determinism profiles defined at deployment, in id order. A profile names everything that
# must match for two executions to be compared bit for bit (docs/protocol.md).
DEFAULT_PROFILES: tuple[str, ...] = (
    "torch-2.13.0/cpu/float32/deterministic",
    "torch-2.13.0/cuda/float32/deterministic",
)

DAY = 86_400


MIN_WINDOW = 10
MAX_WINDOW = 30 * DAY
BPS = 10_000


@dataclass(frozen=True)
class MarketParams:
    """JobMarket parameters (IJobMarket.Params), in contract field order.

    `check()` enforces the bounds MarketLib.check enforces on-chain, with messages naming the fix.
    """

    fee_bps: int = 250
    audit_share_bps: int = 5_000
    audit_bps: int = 1_000
    requester_share_bps: int = 5_000
    reward_share_bps: int = 3_000
    verifiers: int = 3
    collateral_multiple: int = 10
    challenge_window: int = 600
    verifier_assign_window: int = 600
    verifier_exec_window: int = 1_800
    reveal_window: int = 600
    min_exec_window: int = 60
    max_accept_window: int = DAY
    max_exec_window: int = DAY
    reassign_window: int = 1_800
    min_fee: int = 10**14

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(asdict(self).values())

    def max_job_lifetime(self) -> int:
        """Longest a job can stay non-terminal (MarketLib.lifetime): accept and execute, a reopen
        after a no-show, the challenge window (or the replicas' reveal), then two audit rounds."""
        audit_round = self.verifier_assign_window + self.verifier_exec_window + self.reveal_window
        return (
            self.max_accept_window
            + self.max_exec_window
            + self.reassign_window
            + self.max_exec_window
            + max(self.challenge_window, self.reveal_window)
            + 2 * audit_round
        )

    def check(self, unbonding_period: int = 0) -> None:
        """Raises ConfigError naming the first parameter the contract would reject (and how to fix
        it); `unbonding_period` (0 skips it) must be at least twice the longest job lifetime."""
        problems = self.problems(unbonding_period)
        if problems:
            raise ConfigError("invalid market parameters: " + "; ".join(problems))

    def problems(self, unbonding_period: int = 0) -> list[str]:
        """Every bound the contract enforces that these parameters break, each with its fix."""
        out: list[str] = []
        if self.fee_bps > 1_000:
            out.append(f"fee_bps {self.fee_bps} is above 1000; lower it")
        for name in ("audit_share_bps", "audit_bps"):
            value = getattr(self, name)
            if not 0 <= value <= BPS:
                out.append(f"{name} {value} is not in 0..10000")
        if self.requester_share_bps + self.reward_share_bps > BPS:
            out.append(
                f"requester_share_bps + reward_share_bps = "
                f"{self.requester_share_bps + self.reward_share_bps} is above 10000; lower either"
            )
        if self.verifiers not in (1, 3, 5):
            out.append(f"verifiers {self.verifiers} must be 1, 3 or 5 (odd, so a majority exists)")
        if not 1 <= self.collateral_multiple <= 20:
            out.append(f"collateral_multiple {self.collateral_multiple} is not in 1..20")
        elif self.audit_bps * (1 + self.collateral_multiple) < BPS:
            need = -(-BPS // (1 + self.collateral_multiple))
            out.append(
                f"audit_bps x (1 + collateral_multiple) = "
                f"{self.audit_bps * (1 + self.collateral_multiple)} is below 10000 (cheating "
                f"would pay); raise audit_bps to at least {need} or raise collateral_multiple"
            )
        for name in (
            "challenge_window",
            "verifier_assign_window",
            "verifier_exec_window",
            "reveal_window",
            "reassign_window",
            "max_accept_window",
            "max_exec_window",
            "min_exec_window",
        ):
            value = getattr(self, name)
            if not MIN_WINDOW <= value <= MAX_WINDOW:
                out.append(f"{name} {value} s is not between 10 s and 30 days ({MAX_WINDOW} s)")
        if self.min_exec_window > self.max_exec_window:
            out.append(
                f"min_exec_window {self.min_exec_window} is above max_exec_window "
                f"{self.max_exec_window}; lower it or raise max_exec_window"
            )
        if self.verifier_exec_window < self.min_exec_window:
            out.append(
                f"verifier_exec_window {self.verifier_exec_window} is below min_exec_window "
                f"{self.min_exec_window}; verifiers need at least an executor's floor"
            )
        if self.min_fee <= 0:
            out.append("min_fee must be positive (a fee floor stops zero-fee reputation farming)")
        elif self.min_fee >= 2**64:
            out.append(f"min_fee {self.min_fee} does not fit uint64")
        if unbonding_period and 2 * self.max_job_lifetime() > unbonding_period:
            out.append(
                f"2 x max_job_lifetime = {2 * self.max_job_lifetime()} s is above the registry's "
                f"unbonding period {unbonding_period} s; shorten the windows or raise the period"
            )
        return out

    def premium_bps(self, replicas: int) -> int:
        """Audit premium a job pays on its executor pay: audit_bps x verifiers for replicas = 1."""
        return self.audit_bps * self.verifiers if replicas == 1 else 0

    def escrow(self, replicas: int, units: int, max_price_per_unit: int) -> int:
        """JobMarket.escrowFor at these parameters."""
        return escrow_of(
            replicas,
            units,
            max_price_per_unit,
            self.fee_bps,
            self.min_fee,
            self.premium_bps(replicas),
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
    market_lib: str = ""

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
    """Deploys ComputeToken, ProviderRegistry, the MarketLib library and JobMarket (linked
    against it) owned by `deployer`, connects them,
    defines `profiles` and authorises `matchers`; writes the deployment file to `write_to` when
    given. The unbonding period defaults to twice the longest job lifetime plus a day."""
    params = params or MarketParams()
    period = unbonding_period or 2 * params.max_job_lifetime() + DAY
    params.check(period)
    signer = Signer(w3, deployer)
    owner = deployer.address
    start_block = w3.eth.block_number

    def create(name: str, *args: object, libraries: dict[str, str] | None = None) -> str:
        art = abis.load(name)
        missing = [lib for lib in art.libraries if lib not in (libraries or {})]
        if missing:
            raise ConfigError(f"{name} links {', '.join(missing)}; deploy those first")
        bytecode = art.linked(libraries or {}) if art.link_references else art.bytecode
        factory = w3.eth.contract(abi=art.abi, bytecode=bytecode)
        receipt = signer.transact(factory.constructor(*args))
        address = receipt["contractAddress"]
        if address is None:
            raise ChainError(f"deploying {name} produced no contract address; check the node")
        return to_checksum_address(address)

    token = create("ComputeToken", owner)
    registry = create("ProviderRegistry", token, owner, period)
    market_lib = create("MarketLib")
    market = create(
        "JobMarket",
        token,
        registry,
        owner,
        treasury or owner,
        params.as_tuple(),
        libraries={"MarketLib": market_lib},
    )
    reg = w3.eth.contract(
        address=to_checksum_address(registry), abi=abis.load("ProviderRegistry").abi
    )
    mkt = w3.eth.contract(address=to_checksum_address(market), abi=abis.load("JobMarket").abi)
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
        market_lib=market_lib,
    )
    if write_to is not None:
        deployment.write(write_to)
    return deployment


def connect_deployment(rpc_url: str, deployment: Deployment) -> Web3:
    """`connect` to the deployment's chain, then checks that its contracts are there: a
    deployment file of another (or a restarted) chain with the same id fails here with one line,
    not later with undecodable call results."""
    w3 = connect(rpc_url, deployment.chain_id)
    for name, address in (
        ("JobMarket", deployment.market),
        ("ProviderRegistry", deployment.registry),
        ("ComputeToken", deployment.token),
    ):
        try:
            code = w3.eth.get_code(Web3.to_checksum_address(address))
        except ValueError as exc:  # a malformed address in the file
            raise ChainError(
                f"the deployment's {name} address {address!r} is invalid ({exc}); regenerate "
                "the deployment file"
            ) from exc
        if not code:
            raise ChainError(
                f"no {name} contract at {address} on chain {deployment.chain_id} at {rpc_url}: "
                "the deployment file belongs to another chain (or one restarted since); use the "
                "file written when these contracts were deployed (`depin devnet up` writes the "
                "devnet's)"
            )
    return w3
