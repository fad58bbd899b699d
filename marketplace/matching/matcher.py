"""The matcher: which providers run which open jobs. A pure function of its inputs (no I/O).

Eligibility mirrors the on-chain checks of `JobMarket.assign` / `ProviderRegistry.lockExecutors`
exactly, so an assignment built here does not revert for a reason the matcher could have seen:

- registered, and not unbonding (`unbondAt != 0` on-chain);
- profile bit `job.profile` set in `profile_mask`;
- `vram_gib >= job.min_vram_gib`;
- `price_per_unit <= job.max_price_per_unit`;
- the job's exec window is at least the provider's own `min_exec_window`, and the job's units at
  most the provider's `max_units`;
- not the job's requester (`JobMarketRequesterAsProvider`);
- `free_stake >= collateral`, where collateral = collateralMultiple x units x the clearing price,
  the highest ask among the job's chosen executors (not the job's max price), counting the
  collateral of everything assigned earlier in the same call;
- distinct within a job, and not in `job.exclude` (providers excluded after a no-show).

Verifiers are not the matcher's business any more: the contract draws them on-chain.

Two off-chain rules add to those: the provider is `live` (heartbeats, DESIGN section 4), and,
when `max_load` is given, it runs fewer than `max_load` jobs (counting this call's assignments).

Among eligible providers a job takes the `replicas` best by the score key
`(price_per_unit, -reputation, load, address)`: cheapest first (every executor is paid the
highest ask among them, so the cheapest set also minimises the clearing price), then the better
reputation, then the less loaded, then the lower address (lowercased) so that ties break the same
way on every relayer. Candidates are taken in that order; taking one at a higher price raises the
clearing price, so a provider already taken whose free stake no longer covers the collateral at
the new price is put back (it could not cover any later, dearer set either). Jobs are served
in the order given (callers pass them oldest first); a job with too few eligible providers gets
no assignment at all, never a partial one, and consumes nothing. `load` and `free_stake` are
updated as the call assigns, so later jobs see them.

Reputation is the posterior mean of a Beta(1, 1) prior over "a job completes without a slash",
counting each slash as `SLASH_WEIGHT` failed trials: `(done + 1) / (done + 4 * slashed + 2)`. A
newcomer scores 1/2, ten clean jobs 11/12, one slash in a hundred jobs 101/106. Unlike
`done - 4 * slashed` it does not let volume outweigh a bad record (1000 done with 100 slashed
scores below 10 done with none), and it does not starve newcomers. It is kept as an integer
(`reputation()`, scaled by 2**32) so that ordering is exact and platform-independent.

Complexity. Let P be the providers, J the jobs, r a job's replicas. Providers are bucketed once
per call by (profile, VRAM tier, stake tier). The tiers are the VRAM needs and collaterals the
call's jobs ask for: all distinct values when there are at most `MAX_VRAM_TIERS` /
`MAX_STAKE_TIERS` of them per profile, else quantiles of the demand. A job maps to the bucket of
the largest tiers not above its needs; the bucket holds the providers with that profile bit and
at least that VRAM and free stake. Each bucket is a binary heap on the score key, built in
O(P) (only buckets some job maps to exist, at most 64 per profile). A job pops candidates from
its bucket best-first until it has r eligible ones, pushes back the ones it passed over, and
re-files each chosen provider under its new key in that bucket only. The provider's entries in
other buckets keep their older, better keys (load only grows, stake only shrinks); such an entry
is re-filed under the current key when it surfaces, or dropped if the provider no longer
belongs there. So an assignment costs one push, and one job costs O((r + s + f) log P) where s
is the candidates it passed over and f the stale entries it re-filed (each assignment causes at
most one per bucket the provider is in). Independent of P otherwise:

- providers priced above the job's maximum cost nothing (the heap is price-ordered: the first
  one ends the scan);
- providers short of VRAM or stake for the job's tier are not in its bucket;
- a provider whose free stake has fallen below the smallest collateral of every remaining job of
  its bucket, or that reached `max_load`, leaves that bucket for good, once;
- a job whose bucket is smaller than r, or whose collateral exceeds every free stake in it, is
  skipped in O(1).

What can be passed over repeatedly is a provider excluded from the job (the requester, a
no-show), one whose own exec-window floor or unit cap the job misses, or one whose VRAM or
free stake lies between the job's tier and the job's own need (a quantile band when demands
are many and varied). In the worst case (a job that almost every affordable candidate in its
bucket is unfit for) one job costs O(P log P). Building costs O(P x buckets per profile).
bench/matcher.py measures the whole call: tens of thousands of jobs per second at 10,000
providers on two cores; where every size assigns nearly every job, time per job grows about 3x,
not 100x, from 100 to 10,000 providers.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from marketplace.protocol.errors import DepinError

__all__ = [
    "MAX_STAKE_TIERS",
    "MAX_VRAM_TIERS",
    "REPUTATION_SCALE",
    "SLASH_WEIGHT",
    "Assignment",
    "MatchInputError",
    "OpenJob",
    "ProviderView",
    "collateral_for",
    "is_eligible",
    "match",
    "reputation",
]

#: Replica counts the contract accepts.
VALID_REPLICAS: Final = (1, 3, 5)
#: ProviderView.max_units when the provider takes jobs of any size (uint32 max).
UNLIMITED_UNITS: Final = 2**32 - 1

#: A slash counts as this many failed jobs in the reputation estimate.
SLASH_WEIGHT: Final = 4
#: Reputation is a probability scaled to an integer by this factor.
REPUTATION_SCALE: Final = 1 << 32
#: Most VRAM tiers per profile in one call (buckets are profile x VRAM tier x stake tier).
MAX_VRAM_TIERS: Final = 8
#: Most stake (collateral) tiers per profile in one call.
MAX_STAKE_TIERS: Final = 8
#: Profile ids are uint8 on-chain.
_MAX_PROFILE: Final = 255


class MatchInputError(DepinError, ValueError):
    """The matcher was given inconsistent input (a caller bug, not a market condition)."""


@dataclass(frozen=True, slots=True)
class ProviderView:
    """What the matcher knows of one provider: its registry record plus off-chain state.

    From `ProviderRecord`: `free_stake` is `stake - locked - unbonding`, `unbonding` is
    `unbond_at != 0`. `live` comes from heartbeats; `load` counts the provider's active jobs.
    """

    address: str
    profile_mask: int
    vram_gib: int
    price_per_unit: int
    free_stake: int
    unbonding: bool
    registered: bool
    live: bool
    jobs_done: int = 0
    jobs_slashed: int = 0
    load: int = 0
    #: Shortest exec window the provider accepts (its registered terms; 0: protocol floor only).
    min_exec_window: int = 0
    #: Most units per job the provider accepts (its registered terms).
    max_units: int = UNLIMITED_UNITS

    @property
    def reputation(self) -> int:
        return reputation(self.jobs_done, self.jobs_slashed)


@dataclass(frozen=True, slots=True)
class OpenJob:
    """A job waiting for `replicas` executors, with its on-chain requirements."""

    job_id: int
    profile: int
    units: int
    max_price_per_unit: int
    replicas: int
    min_vram_gib: int
    #: The job's collateral multiple (snapshotted at creation): collateral per executor is
    #: `collateral_for(multiple, units, clearing price)`.
    collateral_multiple: int
    #: Seconds each executor has to commit; must be at least each executor's `min_exec_window`.
    exec_window: int
    #: The job's requester, who may not execute it (case-insensitive; "" when unknown).
    requester: str = ""
    #: Addresses that may not take this job (case-insensitive).
    exclude: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.replicas not in VALID_REPLICAS:
            raise MatchInputError(
                f"job {self.job_id}: replicas must be 1, 3 or 5 (got {self.replicas})"
            )
        if not 0 <= self.profile <= _MAX_PROFILE:
            raise MatchInputError(f"job {self.job_id}: profile id must be 0..{_MAX_PROFILE}")
        if self.collateral_multiple < 0 or self.units < 0:
            raise MatchInputError(
                f"job {self.job_id}: collateral multiple and units must not be negative"
            )

    def collateral_at(self, clearing_price: int) -> int:
        """Collateral each executor locks when the job clears at `clearing_price`."""
        return collateral_for(self.collateral_multiple, self.units, clearing_price)

    def barred(self) -> frozenset[str]:
        """Lowercased addresses that may not execute the job: `exclude` and the requester."""
        out = {a.lower() for a in self.exclude}
        if self.requester:
            out.add(self.requester.lower())
        return frozenset(out)


@dataclass(frozen=True, slots=True)
class Assignment:
    """Providers chosen for one job, best first."""

    job_id: int
    providers: tuple[str, ...]


def collateral_for(collateral_multiple: int, units: int, clearing_price: int) -> int:
    """Collateral per participant, as JobLib.collateral computes it on-chain (multiple x units x
    the job's clearing price)."""
    return collateral_multiple * units * clearing_price


def reputation(jobs_done: int, jobs_slashed: int) -> int:
    """(done + 1) / (done + SLASH_WEIGHT x slashed + 2), scaled by REPUTATION_SCALE."""
    return (jobs_done + 1) * REPUTATION_SCALE // (jobs_done + SLASH_WEIGHT * jobs_slashed + 2)


def is_eligible(provider: ProviderView, job: OpenJob, *, max_load: int | None = None) -> bool:
    """Whether `provider` may take `job` right now (distinctness aside). The reference rules.

    Stake is checked at the provider's own ask, the least the job can clear at with it; in a set
    of executors every stake must also cover the collateral at the set's clearing price.
    """
    return (
        provider.registered
        and not provider.unbonding
        and provider.live
        and (max_load is None or provider.load < max_load)
        and (provider.profile_mask >> job.profile) & 1 == 1
        and provider.vram_gib >= job.min_vram_gib
        and provider.price_per_unit <= job.max_price_per_unit
        and provider.min_exec_window <= job.exec_window
        and provider.max_units >= job.units
        and provider.free_stake >= job.collateral_at(provider.price_per_unit)
        and provider.address.lower() not in job.barred()
    )


# A heap entry: (price, -reputation, load, address lowercased, version, index in the `_Pool`).
# Tuples order by these in turn; keys are unique per provider state (the address breaks ties,
# the version counts its assignments), so the index never decides an order and input order
# never matters. A plain tuple, unpacked where it is read: the serving loop pops one per
# candidate, and a named tuple's attribute access costs it 1.6x to 2.3x (bench.matcher).
_Entry = tuple[int, int, int, str, int, int]


class _Candidate(NamedTuple):
    entry: _Entry
    profile_mask: int
    vram: int
    stake: int


@dataclass(slots=True)
class _Pool:
    """Every provider that could take any job of the call (registered, bonded, live, under the
    load cap), by index, with what the call updates as it assigns: free stake, load, version."""

    addresses: list[str] = field(default_factory=list)
    stakes: list[int] = field(default_factory=list)
    loads: list[int] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    vrams: list[int] = field(default_factory=list)
    min_windows: list[int] = field(default_factory=list)
    max_units: list[int] = field(default_factory=list)
    candidates: list[_Candidate] = field(default_factory=list)

    def add(self, p: ProviderView) -> None:
        idx = len(self.addresses)
        self.addresses.append(p.address)
        self.stakes.append(p.free_stake)
        self.loads.append(p.load)
        self.versions.append(0)
        self.vrams.append(p.vram_gib)
        self.min_windows.append(p.min_exec_window)
        self.max_units.append(p.max_units)
        rep = reputation(p.jobs_done, p.jobs_slashed)
        entry: _Entry = (p.price_per_unit, -rep, p.load, p.address.lower(), 0, idx)
        self.candidates.append(_Candidate(entry, p.profile_mask, p.vram_gib, p.free_stake))

    def current(self, entry: _Entry) -> _Entry:
        """`entry` refiled under its provider's current load and version."""
        price, neg_rep, _, address, _, i = entry
        return (price, neg_rep, self.loads[i], address, self.versions[i], i)


@dataclass(slots=True)
class _Buckets:
    """The call's buckets, (profile, VRAM tier, stake tier), only those some job maps to: one
    heap of entries each, and per job its bucket and the smallest collateral floor among it and
    the later jobs of that bucket (a provider below it never takes a job there again)."""

    of_job: list[int]
    #: The bucket's stake tier: a provider below it leaves the bucket once assigned.
    stake_tier: list[int]
    heaps: list[list[_Entry]]
    #: Largest free stake in each bucket when it was built (-1: empty).
    max_free: list[int]
    remaining_min: list[int]


def _tiers(demands: list[int], limit: int) -> list[int]:
    """Bucket thresholds for these demands: all distinct values when few, else quantiles."""
    distinct = sorted(set(demands))
    if len(distinct) <= limit:
        return distinct
    ordered = sorted(demands)
    return sorted({ordered[i * len(ordered) // limit] for i in range(limit)})


def _check(jobs: Sequence[OpenJob], max_load: int | None) -> None:
    if max_load is not None and max_load < 1:
        raise MatchInputError("max_load must be at least 1, or None for no limit")
    seen: set[int] = set()
    for job in jobs:
        if job.job_id in seen:
            raise MatchInputError(f"job {job.job_id} appears twice; pass each open job once")
        seen.add(job.job_id)


def _pool(providers: Sequence[ProviderView], max_load: int | None) -> _Pool:
    pool = _Pool()
    seen: set[str] = set()
    for p in providers:
        low = p.address.lower()
        if low in seen:
            raise MatchInputError(f"provider {p.address} appears twice; pass one view per address")
        seen.add(low)
        if not (p.registered and not p.unbonding and p.live):
            continue
        if max_load is None or p.load < max_load:
            pool.add(p)
    return pool


def _buckets(jobs: Sequence[OpenJob], floors: list[int], pool: _Pool) -> _Buckets:
    vram_demands: dict[int, list[int]] = {}
    stake_demands: dict[int, list[int]] = {}
    for job, floor_ in zip(jobs, floors, strict=True):
        vram_demands.setdefault(job.profile, []).append(job.min_vram_gib)
        stake_demands.setdefault(job.profile, []).append(floor_)
    vram_tiers = {p: _tiers(d, MAX_VRAM_TIERS) for p, d in vram_demands.items()}
    stake_tiers = {p: _tiers(d, MAX_STAKE_TIERS) for p, d in stake_demands.items()}
    ids: dict[tuple[int, int, int], int] = {}
    of_job: list[int] = []
    for job, floor_ in zip(jobs, floors, strict=True):
        vt = vram_tiers[job.profile]
        st = stake_tiers[job.profile]
        key = (
            job.profile,
            vt[bisect_right(vt, job.min_vram_gib) - 1],
            st[bisect_right(st, floor_) - 1],
        )
        of_job.append(ids.setdefault(key, len(ids)))
    count = len(ids)
    stake_tier = [0] * count
    by_profile: dict[int, list[tuple[int, int, int]]] = {}
    for (profile, vram, stake), b in sorted(ids.items()):
        stake_tier[b] = stake
        by_profile.setdefault(profile, []).append((vram, stake, b))

    remaining_min = [0] * len(jobs)
    running: dict[int, int] = {}
    for i in range(len(jobs) - 1, -1, -1):
        b = of_job[i]
        running[b] = remaining_min[i] = min(floors[i], running.get(b, floors[i]))

    heaps: list[list[_Entry]] = [[] for _ in range(count)]
    max_free = [-1] * count
    for profile, buckets in by_profile.items():
        in_profile = [c for c in pool.candidates if (c.profile_mask >> profile) & 1]
        for vram, stake, b in buckets:
            members = [c for c in in_profile if c.vram >= vram and c.stake >= stake]
            if members:
                heaps[b] = heap = [c.entry for c in members]
                heapq.heapify(heap)
                max_free[b] = max(c.stake for c in members)
    return _Buckets(of_job, stake_tier, heaps, max_free, remaining_min)


def _choose(
    job: OpenJob, heap: list[_Entry], pool: _Pool, keep_from: int, max_load: int | None
) -> tuple[list[_Entry], list[_Entry]]:
    """Pops candidates for `job` best first until it has `replicas` fit ones: returns those
    chosen (fewer when the bucket runs out) and those passed over, which go back on the heap.
    Entries of providers that can never take a job of this bucket again are dropped."""
    need = job.replicas
    max_price = job.max_price_per_unit
    min_vram, window, units = job.min_vram_gib, job.exec_window, job.units
    per_price = job.collateral_multiple * units  # collateral = per_price x clearing price
    barred = job.barred()
    stakes, loads, versions = pool.stakes, pool.loads, pool.versions
    vrams, min_windows, max_units = pool.vrams, pool.min_windows, pool.max_units
    heappop, heappush = heapq.heappop, heapq.heappush
    chosen: list[_Entry] = []
    skipped: list[_Entry] = []
    while heap:
        entry = heappop(heap)
        price, _, _, address, version, idx = entry
        if price > max_price:
            skipped.append(entry)
            break  # price-ordered: every remaining candidate is dearer
        stake = stakes[idx]
        if stake < keep_from or (max_load is not None and loads[idx] >= max_load):
            continue  # never eligible again for this bucket in this call: leave it
        if version != versions[idx]:
            # Assigned since this entry was filed: its key only got worse (more load).
            # File it again under its current key; the heap decides when it is due.
            heappush(heap, pool.current(entry))
            continue
        collateral = per_price * price  # the clearing price if this one is taken
        if (
            stake < collateral
            or vrams[idx] < min_vram
            or min_windows[idx] > window
            or max_units[idx] < units
            or (barred and address in barred)
        ):
            skipped.append(entry)
            continue
        if chosen and chosen[-1][0] < price:
            # The clearing price rises to this ask: anyone taken who cannot cover the
            # collateral at it goes back (it cannot cover any dearer set either).
            short = [c for c in chosen if stakes[c[5]] < collateral]
            if short:
                skipped.extend(short)
                chosen = [c for c in chosen if stakes[c[5]] >= collateral]
        chosen.append(entry)
        if len(chosen) == need:
            break
    return chosen, skipped


def _assign(
    job: OpenJob,
    chosen: list[_Entry],
    heap: list[_Entry],
    pool: _Pool,
    floor: int,
    max_load: int | None,
) -> Assignment:
    """Locks the collateral of `chosen` at their clearing price (the highest ask among them) and
    files each again under its new key, in this bucket only: other buckets keep the old entry
    (a better key than the new state), refiled when it surfaces."""
    collateral = job.collateral_multiple * job.units * chosen[-1][0]
    picked: list[str] = []
    for entry in chosen:
        idx = entry[5]
        picked.append(pool.addresses[idx])
        stake = pool.stakes[idx] = pool.stakes[idx] - collateral
        load = pool.loads[idx] = pool.loads[idx] + 1
        pool.versions[idx] += 1
        if stake >= floor and (max_load is None or load < max_load):
            heapq.heappush(heap, pool.current(entry))
    return Assignment(job.job_id, tuple(picked))


def match(
    jobs: Sequence[OpenJob], providers: Sequence[ProviderView], *, max_load: int | None = None
) -> list[Assignment]:
    """Assigns `replicas` distinct eligible providers to each job that can have them.

    Jobs are served in order; the result lists the assigned jobs in that order. Deterministic:
    equal inputs give equal outputs, whatever the order of `providers`.
    """
    _check(jobs, max_load)
    if not jobs or not providers:
        return []
    pool = _pool(providers, max_load)
    if not pool.candidates:
        return []
    # A job's least possible collateral: at the lowest ask of any candidate. Every executor it
    # takes needs at least this much free stake, whatever the set clears at.
    min_ask = min(c.entry[0] for c in pool.candidates)
    floors = [job.collateral_at(min_ask) for job in jobs]
    buckets = _buckets(jobs, floors, pool)

    result: list[Assignment] = []
    for i, job in enumerate(jobs):
        b = buckets.of_job[i]
        heap = buckets.heaps[b]
        if len(heap) < job.replicas or floors[i] > buckets.max_free[b]:
            continue
        chosen, skipped = _choose(job, heap, pool, buckets.remaining_min[i], max_load)
        if len(chosen) < job.replicas:
            skipped.extend(chosen)
        else:
            result.append(_assign(job, chosen, heap, pool, buckets.stake_tier[b], max_load))
        for entry in skipped:
            heapq.heappush(heap, entry)
    return result
