"""Why an open job is still open: the first requirement of the job that leaves fewer eligible
providers than it needs replicas, said in words with what would fix it. Pure: the relayer's API
feeds it the same provider views the matcher sees, and `depin job status` prints the answer.

The requirements are those of `matcher.is_eligible`, taken in the order a requester can act
on them: who is there at all (registered, bonded, live), what the job needs of the hardware
(profile, VRAM), then what it offers (price, window, size, collateral), then who is barred.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from marketplace.matching.matcher import OpenJob, ProviderView
from marketplace.protocol.tokens import format_tokens

__all__ = ["Waiting", "explain", "why_idle"]


@dataclass(frozen=True)
class Waiting:
    """Why `job` waits: `code` names the requirement (or "matchable"), `reason` says it to a
    person with the fix, `eligible` providers could take it of the `needed` replicas."""

    code: str
    reason: str
    eligible: int
    needed: int


def explain(job: OpenJob, providers: Sequence[ProviderView]) -> Waiting:
    """The first requirement that leaves fewer than `job.replicas` providers, with its fix."""
    need = job.replicas
    pool = list(providers)

    def step(keep: Callable[[ProviderView], bool]) -> list[ProviderView]:
        return [p for p in pool if keep(p)]

    def short(code: str, reason: str, left: list[ProviderView]) -> Waiting:
        return Waiting(code, reason, len(left), need)

    bonded = step(lambda p: p.registered and not p.unbonding)
    if len(bonded) < need:
        return short(
            "providers",
            f"{len(bonded)} registered, bonded providers on the market; the job needs {need}: "
            "wait for providers to join, or lower the replicas",
            bonded,
        )
    pool = bonded
    live = step(lambda p: p.live)
    if len(live) < need:
        return short(
            "live",
            f"{len(live)} of {len(pool)} providers are live (heartbeating); the job needs "
            f"{need}: wait for providers to come back, or lower the replicas",
            live,
        )
    pool = live
    profiled = step(lambda p: _meets("profile", p, job))
    if len(profiled) < need:
        return short(
            "profile",
            f"{len(profiled)} live providers run profile {job.profile}; the job needs {need}: "
            "pick a profile live providers run (`depin job submit --profile`)",
            profiled,
        )
    pool = profiled
    roomy = step(lambda p: _meets("vram", p, job))
    if len(roomy) < need:
        most = max(p.vram_gib for p in pool)
        return short(
            "vram",
            f"{len(roomy)} live providers of the profile have {job.min_vram_gib} GiB of GPU "
            f"memory (the most is {most} GiB); lower --min-vram",
            roomy,
        )
    pool = roomy
    cheap = step(lambda p: _meets("price", p, job))
    if len(cheap) < need:
        asks = sorted(p.price_per_unit for p in pool)
        return short(
            "price",
            f"{len(cheap)} live providers ask at most your max price of "
            f"{format_tokens(job.max_price_per_unit)} tokens per unit; {need} would at "
            f"{format_tokens(asks[need - 1])}: raise --max-price to that",
            cheap,
        )
    pool = cheap
    patient = step(lambda p: _meets("window", p, job))
    if len(patient) < need:
        windows = sorted(p.min_exec_window for p in pool)
        return short(
            "window",
            f"{len(patient)} of them accept an exec window of {job.exec_window} s; {need} "
            f"would at {windows[need - 1]} s: raise --exec-window to that",
            patient,
        )
    pool = patient
    sized = step(lambda p: _meets("units", p, job))
    if len(sized) < need:
        sizes = sorted((p.max_units for p in pool), reverse=True)
        return short(
            "units",
            f"{len(sized)} of them take a job of {job.units} units; {need} would take "
            f"{sizes[need - 1]}: split the work into smaller jobs",
            sized,
        )
    pool = sized
    staked = step(lambda p: _meets("stake", p, job))
    if len(staked) < need:
        return short(
            "stake",
            f"{len(staked)} of them have the free stake for the collateral ("
            f"{job.collateral_multiple} x units x price); a smaller job (fewer units) or a "
            "lower price needs less",
            staked,
        )
    pool = staked
    allowed = step(lambda p: _meets("barred", p, job))
    if len(allowed) < need:
        return short(
            "barred",
            f"{len(allowed)} of them may take it (the requester and providers that missed "
            "the job's deadline before may not); wait for others, or lower the replicas",
            allowed,
        )
    return Waiting(
        "matchable",
        f"{len(allowed)} providers can take it; the relayer assigns it in its next round",
        len(allowed),
        need,
    )


#: Why one provider cannot take one job, in the order `explain` checks the requirements.
_PROVIDER_CHECKS: tuple[tuple[str, str], ...] = (
    ("profile", "run another profile"),
    ("vram", "need more GPU memory than you announce"),
    ("price", "pay less per unit than you ask"),
    ("window", "give less time than your minimum exec window"),
    ("units", "are larger than your max units"),
    ("stake", "need more collateral than your free stake"),
    ("barred", "are your own or ones you missed the deadline of"),
)


def _meets(code: str, p: ProviderView, job: OpenJob) -> bool:
    """Whether `p` meets `job`'s requirement `code` (the rules of `matcher.is_eligible`)."""
    if code == "profile":
        return (p.profile_mask >> job.profile) & 1 == 1
    if code == "vram":
        return p.vram_gib >= job.min_vram_gib
    if code == "price":
        return p.price_per_unit <= job.max_price_per_unit
    if code == "window":
        return p.min_exec_window <= job.exec_window
    if code == "units":
        return p.max_units >= job.units
    if code == "stake":
        return p.free_stake >= job.collateral_at(p.price_per_unit)
    if code == "barred":
        return p.address.lower() not in job.barred()
    raise ValueError(f"unknown requirement {code!r}")


def _first_miss(p: ProviderView, job: OpenJob) -> str | None:
    for code, _ in _PROVIDER_CHECKS:
        if not _meets(code, p, job):
            return code
    return None


def why_idle(provider: ProviderView, jobs: Sequence[OpenJob]) -> list[str]:
    """Why `provider` is not taking any of the open `jobs`, one line each, most common first:
    its own state (registered, bonded, live) before the jobs' requirements it does not meet.
    Empty when it could take some open job (the next matching round gives it one)."""
    if not provider.registered:
        return ["not registered: `depin provider register`"]
    if provider.unbonding:
        return ["unbonding: no new jobs until the unbond completes or is cancelled"]
    if not provider.live:
        return [
            "not live: the relayer has no recent heartbeat; run the agent (`depin provider run`)"
        ]
    if provider.free_stake <= 0:
        # Before "no open jobs": with nothing staked, no job will ever come.
        return ["no free stake: every job locks collateral; stake tokens (`depin provider stake`)"]
    if not jobs:
        return ["no open jobs on the market"]
    misses: dict[str, int] = {}
    for job in jobs:
        miss = _first_miss(provider, job)
        if miss is None:
            return []
        misses[miss] = misses.get(miss, 0) + 1
    texts = dict(_PROVIDER_CHECKS)
    ranked = sorted(misses.items(), key=lambda kv: (-kv[1], list(texts).index(kv[0])))
    return [f"{n} of {len(jobs)} open jobs {texts[code]}" for code, n in ranked]
