"""Each job lifecycle path, walked end to end against a deployment on a devnet.

The demo prints these; tests/contracts asserts their payouts. Every path starts from the same
cast (one requester, staked providers, a matcher and a keeper) and returns what moved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.types import RPCEndpoint

from marketplace.devnet.anvil import advance, funded_account, mine
from marketplace.protocol.client import (
    AuditStarted,
    JobRequest,
    JobState,
    Market,
    ProviderAssigned,
    ProviderTerms,
)
from marketplace.protocol.deployment import Deployment, MarketParams, deploy

TOKEN = 10**18
PRICE = 10**15  # 0.001 token per unit
UNITS = 100
PROVIDER_STAKE = 1_000 * TOKEN
REQUESTER_FUNDS = 10_000 * TOKEN
PROVIDER_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace",
    "heidi", "ivan", "judy", "mallory", "niaj",
)  # fmt: skip

#: MarketLib.MAX_DRAWS: draws one audit round may use in all.
MAX_DRAWS = 255

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
    """Sets the audit rate of replicas = 1 jobs; a rate below the contract's floor
    (auditBps x (1 + collateralMultiple) >= 10000: cheating never pays) is raised to the floor.
    Use `draw_clear` to keep one job from being audited."""
    params = cast.owner.params()
    floor = -(-10_000 // (1 + params.collateral_multiple))
    cast.owner.set_params(replace(params, audit_bps=max(audit_bps, floor)))


def job_request(replicas: int) -> JobRequest:
    return JobRequest(
        spec_hash=hashlib.sha256(b'{"kind":"matmul","version":1}').digest(),
        units=UNITS,
        max_price_per_unit=PRICE,
        replicas=replicas,
    )


def _finish_window(cast: Cast, seconds: int) -> None:
    advance(cast.w3, seconds + 1)


# ---------------------------------------------------------------------- draws


def _selects(seed: bytes, job_id: int, audit_bps: int) -> bool:
    """JobMarket._selects: keccak256(abi.encode(seed, jobId)) % 10000 < auditBps."""
    word = keccak(seed + job_id.to_bytes(32, "big"))
    return int.from_bytes(word, "big") % 10_000 < audit_bps


def draw_clear(keeper: Market, job_id: int, *, attempts: int = 50) -> None:
    """Runs the audit draw of Committed job `job_id` so that it does NOT select the job: when the
    seed block's hash would select it, the seed is aged out (257 blocks mined at once, the clock
    unmoved) and the contract re-seeds from a later block, until a seed clears it. A test aid for
    paths that must settle unaudited whatever the audit rate (which has a floor > 0)."""
    w3 = keeper.w3
    for _ in range(attempts):
        job = keeper.job(job_id)
        if job.state != JobState.COMMITTED or job.drawn_clear:
            return
        seed_block = job.seed_block if job.reseeded else keeper.participants(job_id)[0].commit_block
        if w3.eth.block_number <= seed_block:
            mine(w3)
            continue
        if w3.eth.block_number - seed_block > 256:
            keeper.draw_audit(job_id)  # the hash aged out on-chain: the contract re-seeds
            continue
        seed = bytes(w3.eth.get_block(seed_block)["hash"])
        if not _selects(seed, job_id, keeper.params().audit_bps):
            keeper.draw_audit(job_id)
            continue  # normally drawn clear now; the loop checks
        w3.provider.make_request(RPCEndpoint("anvil_mine"), [hex(257), hex(0)])
        keeper.draw_audit(job_id)  # the hash aged out: re-seeds from this block
    raise RuntimeError(f"job {job_id}: no clear audit draw in {attempts} seeds")


def staff(cast: Cast, job_id: int, *, attempts: int = 40) -> list[Market]:
    """Calls staffAudit (from the block after the round's seed block) until every seat of the
    job's current audit round is filled or the draws run out; returns the clients of the
    round's drawn verifiers, in seat order."""
    for _ in range(attempts):
        job = cast.keeper.job(job_id)
        if not job.needs_staffing or job.draws >= MAX_DRAWS:
            break  # staffed, or the round's draws are spent (too few eligible providers)
        if cast.w3.eth.block_number <= job.seed_block:
            mine(cast.w3)
        cast.keeper.staff_audit(job_id)
    return round_verifiers(cast, job_id)


def drawn_verifiers(market: Market, job_id: int) -> list[tuple[int, list[str]]]:
    """(audit round, verifier addresses drawn for it) of every audit round of `job_id`, from its
    AuditStarted and ProviderAssigned events (verifiers: participant index >= replicas)."""
    replicas = market.job(job_id).replicas
    start = market.deployment.block
    events: list[AuditStarted | ProviderAssigned] = [
        *market.audits_started(job_id, from_block=start),
        *market.providers_assigned(job_id, from_block=start),
    ]
    events.sort(key=lambda e: (e.block, e.log_index))
    rounds: list[tuple[int, list[str]]] = []
    for event in events:
        if isinstance(event, AuditStarted):
            rounds.append((event.round, []))
        elif event.index >= replicas and rounds:
            rounds[-1][1].append(event.provider)
    return rounds


def round_verifiers(cast: Cast, job_id: int) -> list[Market]:
    """The clients of the current audit round's drawn verifiers."""
    job = cast.keeper.job(job_id)
    seated = cast.keeper.participants(job_id)[job.verifiers_from : job.participants]
    by_address = {p.address.lower(): p for p in cast.providers.values()}
    return [by_address[p.provider.lower()] for p in seated]


# ---------------------------------------------------------------------- the paths


def optimistic_settled(cast: Cast) -> int:
    """replicas=1: commit, the audit draw clears it, settled after the challenge window."""
    alice = cast.providers["alice"]
    job = cast.requester.create_job(job_request(1))
    cast.matcher.assign(job, [alice.address])
    alice.commit(job, GOOD)
    draw_clear(cast.keeper, job)
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


def _audit_round(cast: Cast, job: int, digests: list[bytes | None]) -> list[Market]:
    """Staffs the current audit round and has its verifiers commit and reveal `digests` in seat
    order (None: commits GOOD but never reveals)."""
    verifiers = staff(cast, job)
    for v, d in zip(verifiers, digests, strict=False):
        v.commit(job, GOOD if d is None else d)
    for v, d in zip(verifiers, digests, strict=False):
        if d is not None:
            v.reveal(job, d)
    return verifiers


def replicas3_one_wrong(cast: Cast) -> int:
    """replicas=3: one provider reveals another digest; the disagreement goes to drawn
    verifiers, who uphold the majority; the odd one out is slashed."""
    alice, bob, dave = (cast.providers[n] for n in ("alice", "bob", "dave"))
    job = cast.requester.create_job(job_request(3))
    cast.matcher.assign(job, [alice.address, bob.address, dave.address])
    alice.commit(job, GOOD)
    bob.commit(job, GOOD)
    dave.commit(job, BAD)
    alice.reveal(job, GOOD)
    bob.reveal(job, GOOD)
    dave.reveal(job, BAD)
    cast.keeper.finalize(job)  # disagreement: audit round 1
    _audit_round(cast, job, [GOOD] * cast.owner.params().verifiers)
    cast.keeper.finalize(job)
    return job


def audit_catches_cheater(cast: Cast) -> int:
    """replicas=1: the audit draw selects the job, drawn verifiers out-vote a cheater."""
    set_audit_rate(cast, 10_000)
    cheater = cast.providers["erin"]
    job = cast.requester.create_job(job_request(1))
    cast.matcher.assign(job, [cheater.address])
    cheater.commit(job, BAD)
    mine(cast.w3)
    cast.keeper.draw_audit(job)
    set_audit_rate(cast, 0)
    verifiers = staff(cast, job)
    for v in verifiers:
        v.commit(job, GOOD)
    cheater.reveal(job, BAD)
    for v in verifiers:
        v.reveal(job, GOOD)
    cast.keeper.finalize(job)
    return job


def challenge_lost(cast: Cast) -> int:
    """replicas=1: the requester challenges an honest result; drawn verifiers uphold it and the
    bond pays them."""
    alice = cast.providers["alice"]
    job = cast.requester.create_job(job_request(1))
    cast.matcher.assign(job, [alice.address])
    alice.commit(job, GOOD)
    cast.requester.challenge(job)
    verifiers = staff(cast, job)
    for v in verifiers:
        v.commit(job, GOOD)
    alice.reveal(job, GOOD)
    for v in verifiers:
        v.reveal(job, GOOD)
    cast.keeper.finalize(job)
    return job


def no_show(cast: Cast) -> int:
    """An assigned provider never commits: slashed, the job reopens and another settles it."""
    frank, bob = cast.providers["frank"], cast.providers["bob"]
    job = cast.requester.create_job(job_request(1))
    cast.matcher.assign(job, [frank.address])
    _finish_window(cast, cast.requester.job(job).exec_window)
    cast.keeper.expire(job)
    cast.matcher.assign(job, [bob.address])
    bob.commit(job, GOOD)
    draw_clear(cast.keeper, job)
    _finish_window(cast, cast.owner.params().challenge_window)
    cast.keeper.finalize(job)
    return job


def unbond_then_slashed(cast: Cast) -> int:
    """A provider asks to unbond while running a job, then cheats: drawn verifiers side with the
    other two, the unbonding stake is still slashed, and only the rest leaves after the delay."""
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
    cast.keeper.finalize(job)  # disagreement: audit round 1
    _audit_round(cast, job, [GOOD] * cast.owner.params().verifiers)
    cast.keeper.finalize(job)
    record = grace.provider(grace.address)
    advance(cast.w3, record.unbond_at - cast.w3.eth.get_block("latest")["timestamp"] + 1)
    grace.withdraw_unbonded()
    return job


def escalation_no_verdict(cast: Cast) -> int:
    """replicas=1, challenged: the first round's verifiers split (one for, one against, one
    silent), so a second round of 2k + 1 fresh verifiers is drawn; it splits too (or cannot be
    staffed from the providers left): no verdict, the requester is refunded and nobody is
    slashed or paid."""
    carol = cast.providers["carol"]
    job = cast.requester.create_job(job_request(1))
    cast.matcher.assign(job, [carol.address])
    carol.commit(job, GOOD)
    cast.requester.challenge(job)
    k = cast.owner.params().verifiers
    split = [GOOD] * (k // 2) + [BAD] * (k // 2) + [None]
    _audit_round(cast, job, split)
    carol.reveal(job, GOOD)
    _finish_window(cast, cast.owner.params().reveal_window)
    cast.keeper.finalize(job)  # no majority in round 1: round 2
    seats = cast.keeper.job(job).seats
    staffed = staff(cast, job)
    if len(staffed) == seats:
        _audit_round(cast, job, [GOOD] * (seats // 2) + [BAD] * (seats // 2) + [None])
        _finish_window(cast, cast.owner.params().reveal_window)
    else:
        _finish_window(cast, cast.owner.params().verifier_assign_window)
    cast.keeper.finalize(job)
    return job


PATHS: tuple[tuple[str, Callable[[Cast], int]], ...] = (
    ("replicas=1, settled after the challenge window", optimistic_settled),
    ("replicas=3, all honest", replicas3_honest),
    ("replicas=3, one wrong digest, drawn verifiers uphold the majority", replicas3_one_wrong),
    ("replicas=1, audit catches a cheater", audit_catches_cheater),
    ("replicas=1, requester challenge lost", challenge_lost),
    ("no-show slashed, job reopened and settled", no_show),
    ("unbond requested, then slashed during the delay", unbond_then_slashed),
    ("escalation to a second round, no verdict: refund", escalation_no_verdict),
)


def walk(cast: Cast, title: str, path: Callable[[Cast], int]) -> PathResult:
    """Runs one path, withdrawing nothing, and records the books around it."""
    before = snapshot(cast)
    job = path(cast)
    return PathResult(title, job, cast.owner.state(job), before, snapshot(cast))
