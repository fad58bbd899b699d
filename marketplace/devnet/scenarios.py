"""Each job lifecycle path, walked end to end against a deployment on a devnet.

The demo prints these; tests/contracts asserts their payouts. Every path starts from the same
cast (one requester, staked providers, a matcher and a keeper) and returns what moved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.devnet.anvil import advance, funded_account, mine
from marketplace.protocol.client import JobRequest, JobState, Market, ProviderTerms
from marketplace.protocol.deployment import Deployment, MarketParams, deploy

TOKEN = 10**18
PRICE = 10**15  # 0.001 token per unit
UNITS = 100
PROVIDER_STAKE = 1_000 * TOKEN
REQUESTER_FUNDS = 10_000 * TOKEN
PROVIDER_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace")

GOOD = hashlib.sha256(b"the correct output tensor bytes").digest()
BAD = hashlib.sha256(b"a fabricated output").digest()


@dataclass
class Cast:
    """The accounts of a scenario, each with a client bound to its key."""

    w3: Web3
    deployment: Deployment
    owner: Market
    matcher: Market
    keeper: Market
    requester: Market
    providers: dict[str, Market]
    names: dict[str, str] = field(default_factory=dict)

    def name(self, address: str) -> str:
        return self.names.get(address.lower(), address[:10])

    def accounts(self) -> list[str]:
        return [self.requester.address, *(p.address for p in self.providers.values())]


@dataclass(frozen=True)
class Position:
    """What one account holds: tokens in its wallet, credits in the market, stake."""

    wallet: int
    credits: int
    stake: int

    @property
    def liquid(self) -> int:
        return self.wallet + self.credits


@dataclass(frozen=True)
class Snapshot:
    positions: dict[str, Position]
    audit_pool: int
    protocol_fees: int
    supply: int


@dataclass(frozen=True)
class PathResult:
    """One walked path: the job, its final state, and the books before and after."""

    title: str
    job_id: int
    state: JobState
    before: Snapshot
    after: Snapshot

    def delta(self, account: str) -> tuple[int, int]:
        """(change in wallet + credits, change in stake) of `account`."""
        b, a = self.before.positions[account], self.after.positions[account]
        return a.liquid - b.liquid, a.stake - b.stake

    @property
    def burned(self) -> int:
        return self.before.supply - self.after.supply

    @property
    def to_pools(self) -> int:
        return (self.after.audit_pool - self.before.audit_pool) + (
            self.after.protocol_fees - self.before.protocol_fees
        )


def snapshot(cast: Cast) -> Snapshot:
    m = cast.owner
    positions = {
        a: Position(m.balance_of(a), m.credits(a), m.provider(a).stake) for a in cast.accounts()
    }
    return Snapshot(positions, m.audit_pool(), m.protocol_fees(), m.total_supply())


def setup(
    w3: Web3, owner: LocalAccount, *, params: MarketParams | None = None, providers: int = 7
) -> Cast:
    """Deploys, funds a requester and registers + stakes `providers` CPU providers."""
    matcher, keeper, requester = funded_account(w3), funded_account(w3), funded_account(w3)
    deployment = deploy(w3, owner, matchers=(matcher.address,), params=params)
    admin = Market(w3, deployment, owner)
    admin.mint(requester.address, REQUESTER_FUNDS)
    cast = Cast(
        w3=w3,
        deployment=deployment,
        owner=admin,
        matcher=admin.as_account(matcher),
        keeper=admin.as_account(keeper),
        requester=admin.as_account(requester),
        providers={},
    )
    cast.names[requester.address.lower()] = "requester"
    for name in PROVIDER_NAMES[:providers]:
        key = funded_account(w3)
        admin.mint(key.address, PROVIDER_STAKE)
        client = admin.as_account(key)
        client.register(ProviderTerms(profile_mask=0b1, price_per_unit=PRICE, gpu_model="cpu"))
        client.stake(PROVIDER_STAKE)
        cast.providers[name] = client
        cast.names[key.address.lower()] = name
    return cast


def set_audit_rate(cast: Cast, audit_bps: int) -> None:
    cast.owner.set_params(replace(cast.owner.params(), audit_bps=audit_bps))


def job_request(replicas: int) -> JobRequest:
    return JobRequest(
        spec_hash=hashlib.sha256(b'{"kind":"matmul","version":1}').digest(),
        units=UNITS,
        max_price_per_unit=PRICE,
        replicas=replicas,
    )


def _finish_window(cast: Cast, seconds: int) -> None:
    advance(cast.w3, seconds + 1)


# ---------------------------------------------------------------------- the paths


def optimistic_settled(cast: Cast) -> int:
    """replicas=1: commit, no audit drawn, settled after the challenge window."""
    set_audit_rate(cast, 0)
    alice = cast.providers["alice"]
    job = cast.requester.create_job(job_request(1))
    cast.matcher.assign(job, [alice.address])
    alice.commit(job, GOOD)
    _finish_window(cast, cast.owner.params().challenge_window)
    cast.keeper.finalize(job)
    return job


def replicas3_honest(cast: Cast) -> int:
    """replicas=3: three providers agree; each is paid."""
    trio = [cast.providers[n] for n in ("alice", "bob", "carol")]
    job = cast.requester.create_job(job_request(3))
    cast.matcher.assign(job, [p.address for p in trio])
    for p in trio:
        p.commit(job, GOOD)
    for p in trio:
        p.reveal(job, GOOD)
    cast.keeper.finalize(job)
    return job


def replicas3_one_wrong(cast: Cast) -> int:
    """replicas=3: one provider reveals another digest and is slashed."""
    alice, bob, dave = (cast.providers[n] for n in ("alice", "bob", "dave"))
    job = cast.requester.create_job(job_request(3))
    cast.matcher.assign(job, [alice.address, bob.address, dave.address])
    alice.commit(job, GOOD)
    bob.commit(job, GOOD)
    dave.commit(job, BAD)
    alice.reveal(job, GOOD)
    bob.reveal(job, GOOD)
    dave.reveal(job, BAD)
    cast.keeper.finalize(job)
    return job


def audit_catches_cheater(cast: Cast) -> int:
    """replicas=1: the audit draw selects the job, three verifiers out-vote a cheater."""
    set_audit_rate(cast, 10_000)
    cheater = cast.providers["erin"]
    verifiers = [cast.providers[n] for n in ("alice", "bob", "carol")]
    job = cast.requester.create_job(job_request(1))
    cast.matcher.assign(job, [cheater.address])
    cheater.commit(job, BAD)
    mine(cast.w3)
    cast.keeper.draw_audit(job)
    cast.matcher.assign_verifiers(job, [v.address for v in verifiers])
    for v in verifiers:
        v.commit(job, GOOD)
    cheater.reveal(job, BAD)
    for v in verifiers:
        v.reveal(job, GOOD)
    cast.keeper.finalize(job)
    set_audit_rate(cast, 0)
    return job


def challenge_lost(cast: Cast) -> int:
    """replicas=1: the requester challenges an honest result; the bond pays the verifiers."""
    set_audit_rate(cast, 0)
    alice = cast.providers["alice"]
    verifiers = [cast.providers[n] for n in ("bob", "carol", "dave")]
    job = cast.requester.create_job(job_request(1))
    cast.matcher.assign(job, [alice.address])
    alice.commit(job, GOOD)
    cast.requester.challenge(job)
    cast.matcher.assign_verifiers(job, [v.address for v in verifiers])
    for v in verifiers:
        v.commit(job, GOOD)
    alice.reveal(job, GOOD)
    for v in verifiers:
        v.reveal(job, GOOD)
    cast.keeper.finalize(job)
    return job


def no_show(cast: Cast) -> int:
    """An assigned provider never commits: slashed, the job reopens and another settles it."""
    set_audit_rate(cast, 0)
    frank, bob = cast.providers["frank"], cast.providers["bob"]
    job = cast.requester.create_job(job_request(1))
    cast.matcher.assign(job, [frank.address])
    _finish_window(cast, cast.requester.job(job).exec_window)
    cast.keeper.expire(job)
    cast.matcher.assign(job, [bob.address])
    bob.commit(job, GOOD)
    _finish_window(cast, cast.owner.params().challenge_window)
    cast.keeper.finalize(job)
    return job


def unbond_then_slashed(cast: Cast) -> int:
    """A provider asks to unbond while running a job, then cheats: the unbonding stake is
    still slashed, and only the rest leaves after the delay."""
    grace, alice, bob = (cast.providers[n] for n in ("grace", "alice", "bob"))
    job = cast.requester.create_job(job_request(3))
    cast.matcher.assign(job, [grace.address, alice.address, bob.address])
    free = grace.provider(grace.address).free_stake
    grace.request_unbond(free)
    grace.commit(job, BAD)
    alice.commit(job, GOOD)
    bob.commit(job, GOOD)
    grace.reveal(job, BAD)
    alice.reveal(job, GOOD)
    bob.reveal(job, GOOD)
    cast.keeper.finalize(job)
    record = grace.provider(grace.address)
    advance(cast.w3, record.unbond_at - cast.w3.eth.get_block("latest")["timestamp"] + 1)
    grace.withdraw_unbonded()
    return job


PATHS: tuple[tuple[str, Callable[[Cast], int]], ...] = (
    ("replicas=1, settled after the challenge window", optimistic_settled),
    ("replicas=3, all honest", replicas3_honest),
    ("replicas=3, one wrong digest slashed", replicas3_one_wrong),
    ("replicas=1, audit catches a cheater", audit_catches_cheater),
    ("replicas=1, requester challenge lost", challenge_lost),
    ("no-show slashed, job reopened and settled", no_show),
    ("unbond requested, then slashed during the delay", unbond_then_slashed),
)


def walk(cast: Cast, title: str, path: Callable[[Cast], int]) -> PathResult:
    """Runs one path, withdrawing nothing, and records the books around it."""
    before = snapshot(cast)
    job = path(cast)
    return PathResult(title, job, cast.owner.state(job), before, snapshot(cast))
