"""`make chaos`: the faults an operator meets, injected into a running devnet with real processes.

One devnet comes up (Anvil, Redis, the relayer, honest providers with their agents and Celery
workers). Each trial submits a batch of embed jobs, waits until they are in flight, injects one
fault (kill -9 of a component, its restart, a wiped Redis, a chain rolled back to its last
state dump), heals it, and follows every job to a terminal state. Then it checks, per fault:

- every job of the trial is terminal (Settled, Refunded or Expired);
- no double commit (one ResultCommitted per provider and job) and no double pay (one Credited
  per provider and job, one JobClosed per job);
- exact conservation of tokens over every holder and both contracts (`books.conservation`);
- no honest provider slashed: the ProviderSlashed events of the trial's jobs name only providers
  the fault took offline on purpose (`verifier-offline`), none of the others; nor any seat of
  theirs released (the jobs have an hour to run: a release would be a fee paid for nothing);
- the drain time: seconds from the heal to the last job terminal, beside the baseline trial's
  (`none`: the same batch with no fault) so the fault's own delay reads off the table.

and prints one table row per fault. Exit status 0 only when every trial passes.

    python -m marketplace.devnet.chaos [--faults relayer-down,anvil-rollback,...] [--jobs 30]
                                       [--providers 4] [--audit-bps 10000] [--short]
                                       [--keep] [--dir DIR]

`--short` is the version `make test` runs (tests/integration/test_chaos.py): fewer jobs and
shorter outages, the same faults and checks.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table
from web3.exceptions import Web3Exception

from marketplace.devnet import processes
from marketplace.devnet.batch import job_drafts
from marketplace.devnet.books import Books, Conservation, conservation, read_books
from marketplace.devnet.manager import Devnet, DevnetConfig, DevnetError
from marketplace.protocol.client import JobState, Market
from marketplace.protocol.errors import DepinError
from marketplace.requester import Requester

_T = TypeVar("_T")
#: Seconds after a provider goes silent before the relayer stops matching it: three missed
#: devnet heartbeats (2 s each) and a margin.
OFFLINE_NOTICED = 8.0
#: Seconds between Anvil's state dumps on the chaos devnet: a batch settles in seconds once
#: assigned, so the rollback must find a dump taken while the batch is still in flight.
STATE_INTERVAL = 1

__all__ = ["FAULTS", "ChaosConfig", "ChaosError", "Fault", "Trial", "main", "run_chaos"]


class ChaosError(DepinError, RuntimeError):
    """A trial could not run to its end (the devnet did not come back, jobs never closed); the
    message names the logs to read."""


@dataclass(frozen=True)
class Fault:
    """One fault: `inject` breaks something, `heal` `outage` seconds later repairs it."""

    name: str
    description: str
    inject: Callable[[Devnet, ChaosConfig], None]
    heal: Callable[[Devnet, ChaosConfig], None]
    #: Seconds between inject and heal (full run; `--short` uses `short_outage`).
    outage: float
    short_outage: float
    #: Seconds after the batch is submitted before the fault is injected (then it waits until
    #: a job of the batch left Open, so the fault hits work in flight).
    delay: float = 4.0
    #: Inject right after Anvil's next periodic state dump once the batch is assigned, so the
    #: dump holds the batch and a rollback drops what the providers did with it.
    after_dump: bool = False
    #: Providers (by index into the devnet's list) the fault takes offline for the whole trial;
    #: their no-show slashes are the protocol working, not an honest provider slashed. Such a
    #: fault is injected before the batch, once the relayer has seen the providers' heartbeats
    #: stop (a provider already silent is never matched; the draw can still pick it).
    offline: tuple[int, ...] = ()


def _components(devnet: Devnet, role: str) -> list[str]:
    return [p.name for p in devnet.state.processes if p.role == role]


def _kill(names: Callable[[Devnet], Sequence[str]]) -> Callable[[Devnet, ChaosConfig], None]:
    def inject(devnet: Devnet, config: ChaosConfig) -> None:
        for name in names(devnet):
            devnet.kill(name, signal.SIGKILL)

    return inject


def _restart(names: Callable[[Devnet], Sequence[str]]) -> Callable[[Devnet, ChaosConfig], None]:
    def heal(devnet: Devnet, config: ChaosConfig) -> None:
        for name in names(devnet):
            devnet.restart(name)

    return heal


def _relayer(devnet: Devnet) -> list[str]:
    return _components(devnet, "relayer")


def _anvil(devnet: Devnet) -> list[str]:
    return _components(devnet, "anvil")


def _redis(devnet: Devnet) -> list[str]:
    return _components(devnet, "redis")


def _agents(devnet: Devnet) -> list[str]:
    return _components(devnet, "agent")


def _first_workers(devnet: Devnet) -> list[str]:
    """The Celery workers of the first two providers: main process and pool children."""
    return _components(devnet, "worker")[:2]


def _offline_provider(devnet: Devnet) -> list[str]:
    name = devnet.state.providers[0].name
    return [f"{name}-agent", f"{name}-worker"]


def _wipe_redis(devnet: Devnet, config: ChaosConfig) -> None:
    """kill -9, then the append-only files removed: every queued task and result is gone."""
    for name in _redis(devnet):
        devnet.kill(name, signal.SIGKILL)
    data = devnet.dir / "redis"
    for path in data.iterdir() if data.exists() else ():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _nothing(devnet: Devnet, config: ChaosConfig) -> None:
    """The baseline trial's fault: none."""


FAULTS: tuple[Fault, ...] = (
    Fault(
        "none",
        "no fault: the baseline drain time of a batch on this machine",
        _nothing,
        _nothing,
        outage=0.0,
        short_outage=0.0,
    ),
    Fault(
        "relayer-down",
        "relayer (matcher, keeper, API) kill -9, restarted after the outage",
        _kill(_relayer),
        _restart(_relayer),
        outage=60.0,
        short_outage=20.0,
    ),
    Fault(
        "anvil-rollback",
        "Anvil kill -9, restarted from its last periodic state dump (the chain rolls back)",
        _kill(_anvil),
        _restart(_anvil),
        outage=3.0,
        short_outage=3.0,
        delay=1.0,
        after_dump=True,
    ),
    Fault(
        "redis-restart",
        "Redis kill -9, restarted with its append-only data",
        _kill(_redis),
        _restart(_redis),
        outage=10.0,
        short_outage=5.0,
    ),
    Fault(
        "redis-wipe",
        "Redis kill -9, restarted without its data (queued tasks and results lost)",
        _wipe_redis,
        _restart(_redis),
        outage=10.0,
        short_outage=5.0,
    ),
    Fault(
        "worker-kill",
        "two providers' Celery workers (main and pool child) kill -9 mid-task, restarted",
        _kill(_first_workers),
        _restart(_first_workers),
        outage=10.0,
        short_outage=5.0,
    ),
    Fault(
        "agent-kill",
        "every provider agent kill -9, restarted after the outage (shorter than the devnet's "
        "30 s reveal window: an agent down past it misses its reveals, and that is slashed)",
        _kill(_agents),
        _restart(_agents),
        outage=15.0,
        short_outage=10.0,
    ),
    Fault(
        "verifier-offline",
        "one provider (agent and worker) offline for the whole trial: audits it is drawn for "
        "must still end with a verdict",
        _kill(_offline_provider),
        _nothing,
        outage=0.0,
        short_outage=0.0,
        delay=0.0,
        offline=(0,),
    ),
)


@dataclass(frozen=True)
class ChaosConfig:
    faults: tuple[str, ...] = tuple(f.name for f in FAULTS)
    jobs: int = 30
    providers: int = 4
    #: Every single-replica job audited, so faults also hit audits (drawn verifiers running,
    #: committing and revealing), not only executors.
    audit_bps: int = 10_000
    short: bool = False
    #: Seconds a trial's jobs may take to become terminal after the heal.
    drain_timeout: float = 900.0
    dir: Path | None = None
    keep: bool = False


@dataclass
class Trial:
    """What one fault did to one batch."""

    fault: str
    jobs: int = 0
    states: Counter[str] = field(default_factory=Counter)
    not_terminal: list[int] = field(default_factory=list)
    double_commits: int = 0
    double_pays: int = 0
    conservation: Conservation | None = None
    #: Jobs of the batch not yet terminal when the fault was injected (0: it hit nothing).
    in_flight: int = 0
    #: Slashes of providers the trial kept honest and online, and of every provider.
    honest_slashes: int = 0
    slashes: int = 0
    #: Seats handed back (release fee paid); every trial's jobs have an hour to run, so an
    #: honest provider never needs to.
    releases: int = 0
    honest_releases: int = 0
    outage: float = 0.0
    drain: float | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return (
            not self.error
            and self.in_flight > 0
            and not self.not_terminal
            and self.double_commits == 0
            and self.double_pays == 0
            and self.conservation is not None
            and self.conservation.ok
            and self.honest_slashes == 0
            and self.honest_releases == 0
        )


def _retry(call: Callable[[], _T], *, seconds: float = 60.0) -> _T:
    """`call` retried while the chain is briefly unreachable (Anvil restarting)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except (DepinError, Web3Exception, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _addresses(devnet: Devnet) -> tuple[list[str], list[str]]:
    """Every address that can hold tokens on the devnet, and the providers among them."""
    providers = [p.address for p in devnet.state.providers]
    everyone = [
        devnet.requester_account().address,
        *providers,
        devnet.state.deployer["address"],
        devnet.state.matcher,
    ]
    return everyone, providers


def _books(devnet: Devnet, market: Market) -> Books:
    everyone, providers = _addresses(devnet)
    return _retry(lambda: read_books(market, everyone, providers))


def _states(market: Market, ids: Sequence[int]) -> dict[int, JobState]:
    return {i: _retry(lambda i=i: market.job(i).state) for i in ids}  # type: ignore[misc]


def _wait_in_flight(
    market: Market, ids: Sequence[int], seconds: float, dump: Path | None = None
) -> None:
    """Waits `seconds`, then until one job of the batch left Open (work is running), for a
    minute at most, then for Anvil's next state dump when `dump` is given: the dump holds the
    batch assigned, and what the providers do after it is what a rollback drops."""
    started = time.monotonic()
    time.sleep(seconds)
    while time.monotonic() - started < seconds + 60.0:
        if any(s != JobState.OPEN for s in _states(market, ids).values()):
            break
        time.sleep(0.2)
    if dump is None:
        return
    mtime = dump.stat().st_mtime if dump.exists() else 0.0
    waited = time.monotonic()
    while time.monotonic() - waited < 2 * STATE_INTERVAL + 5.0:
        if dump.exists() and dump.stat().st_mtime != mtime:
            return
        time.sleep(0.05)


def _drain(market: Market, ids: Sequence[int], timeout: float) -> tuple[dict[int, JobState], float]:
    started = time.monotonic()
    while True:
        states = _states(market, ids)
        elapsed = time.monotonic() - started
        if all(s.terminal for s in states.values()) or elapsed > timeout:
            return states, elapsed
        time.sleep(1.0)


def _events(market: Market, event: str, ids: Sequence[int]) -> list[dict[str, Any]]:
    """The arguments of every `event` of the trial's jobs on the chain as it now is (events of
    blocks a rollback dropped are gone with them)."""
    wanted = set(ids)
    entries = _retry(lambda: market.event_args(event, from_block=market.deployment.block))
    return [a for a in entries if int(a["jobId"]) in wanted]


def _audit(trial: Trial, market: Market, ids: Sequence[int], honest: set[str]) -> None:
    """Double commits and pays, slashes and releases, from the chain's events of the trial."""
    commits = Counter(
        (int(a["jobId"]), str(a["provider"]).lower())
        for a in _events(market, "ResultCommitted", ids)
    )
    trial.double_commits = sum(n - 1 for n in commits.values() if n > 1)
    # A provider may be credited twice for one job for different reasons (a verifier's pay and
    # its share of a slash), so a double pay is the same credit twice (job, account, amount)
    # or a job closed twice; a credit from nowhere also breaks the market's solvency check.
    seated = trial_providers(market, ids)
    credited = Counter(
        (int(a["jobId"]), str(a["account"]).lower(), int(a["amount"]))
        for a in _events(market, "Credited", ids)
        if str(a["account"]).lower() in seated
    )
    closed = Counter(int(a["jobId"]) for a in _events(market, "JobClosed", ids))
    trial.double_pays = sum(n - 1 for n in credited.values() if n > 1) + sum(
        n - 1 for n in closed.values() if n > 1
    )
    slashed = [str(a["provider"]).lower() for a in _events(market, "ProviderSlashed", ids)]
    trial.slashes = len(slashed)
    keep = {h.lower() for h in honest}
    trial.honest_slashes = sum(1 for p in slashed if p in keep)
    released = [str(a["provider"]).lower() for a in _events(market, "ProviderReleased", ids)]
    trial.releases = len(released)
    trial.honest_releases = sum(1 for p in released if p in keep)


def trial_providers(market: Market, ids: Sequence[int]) -> set[str]:
    """Every provider seated in the trial's jobs (executors and drawn verifiers), lower case."""
    out: set[str] = set()
    for i in ids:
        parts = _retry(lambda i=i: market.participants(i))  # type: ignore[misc]
        out |= {p.provider.lower() for p in parts}
    return out


def run_trial(devnet: Devnet, fault: Fault, config: ChaosConfig, console: Console) -> Trial:
    """One batch through one fault; never raises for a failed check (the Trial says)."""
    trial = Trial(fault.name, jobs=config.jobs)
    market = devnet.owner()
    honest = {
        p.address
        for i, p in enumerate(devnet.state.providers)
        if p.behavior == "honest" and i not in fault.offline
    }
    before = _books(devnet, market)
    outage = fault.short_outage if config.short else fault.outage
    if fault.offline:
        console.print(f"  {fault.name}: inject ({fault.description})")
        fault.inject(devnet, config)
        time.sleep(OFFLINE_NOTICED)
        trial.in_flight = config.jobs
    drafts = job_drafts(config.jobs, providers=len(honest) or 1, sentences_per_job=2)
    with Requester(
        devnet.w3, devnet.deployment, devnet.requester_account(), devnet.api_url, poll_interval=0.5
    ) as requester:
        ids = requester.submit_many([d for d, _ in drafts])
    console.print(f"  {fault.name}: submitted jobs {ids[0]}..{ids[-1]}")
    if not fault.offline:
        dump = devnet.dir / "anvil-state.json" if fault.after_dump else None
        _wait_in_flight(market, ids, fault.delay, dump)
        trial.in_flight = sum(1 for s in _states(market, ids).values() if not s.terminal)
        console.print(f"  {fault.name}: inject ({fault.description}; {trial.in_flight} in flight)")
        fault.inject(devnet, config)
        time.sleep(outage)
    fault.heal(devnet, config)
    trial.outage = outage
    console.print(f"  {fault.name}: healed after {outage:.0f} s; draining")
    states, drain = _drain(market, ids, config.drain_timeout)
    trial.states = Counter(s.name.lower() for s in states.values())
    trial.not_terminal = [i for i, s in states.items() if not s.terminal]
    trial.drain = None if trial.not_terminal else drain
    _audit(trial, market, ids, honest)
    if not trial.not_terminal:
        trial.conservation = conservation(before, _books(devnet, market))
    for index in fault.offline:  # back online for the next trial
        name = devnet.state.providers[index].name
        for component in (f"{name}-agent", f"{name}-worker"):
            devnet.restart(component)
    return trial


def run_chaos(config: ChaosConfig, console: Console) -> list[Trial]:
    """Brings a devnet up, runs one trial per fault in `config.faults`, stops the devnet."""
    unknown = set(config.faults) - {f.name for f in FAULTS}
    if unknown:
        raise ChaosError(
            f"unknown fault(s) {sorted(unknown)}; choose from {[f.name for f in FAULTS]}"
        )
    directory = config.dir or Path(tempfile.mkdtemp(prefix="depin-chaos-"))
    devnet = Devnet.up(
        DevnetConfig(
            dir=directory / "devnet",
            providers=config.providers,
            audit_bps=config.audit_bps,
            state_interval=STATE_INTERVAL,
            fresh=True,
        ),
        progress=lambda line: console.print(f"  {line}"),
    )
    trials: list[Trial] = []
    pgids = [p.pgid for p in devnet.state.processes]
    try:
        for fault in FAULTS:
            if fault.name not in config.faults:
                continue
            try:
                trials.append(run_trial(devnet, fault, config, console))
            except (DepinError, Web3Exception, OSError) as exc:
                trials.append(Trial(fault.name, jobs=config.jobs, error=str(exc)[:300]))
            console.print(_row_line(trials[-1]))
    finally:
        with contextlib.suppress(DevnetError):
            devnet.down()
    left = [g for g in pgids if processes.group_alive(g)]
    if left:
        console.print(f"[red]process groups left running: {left}")
    if not config.keep and all(t.ok for t in trials) and config.dir is None:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        console.print(f"devnet directory kept: {directory} (logs in devnet/logs)")
    return trials


def _row_line(t: Trial) -> str:
    drain = "-" if t.drain is None else f"{t.drain:.0f} s"
    verdict = "PASS" if t.ok else "FAIL"
    states = dict(t.states) if not t.error else t.error
    return (
        f"  {verdict} {t.fault}: {t.in_flight} in flight; {states}; drain {drain}; "
        f"slashes {t.slashes} (honest {t.honest_slashes}); releases {t.releases}"
    )


def table(trials: Sequence[Trial]) -> Table:
    out = Table(title="chaos: every fault against a running devnet")
    for column in (
        "fault",
        "jobs",
        "in flight",
        "terminal",
        "states",
        "double commit/pay",
        "conservation",
        "slashes (honest)",
        "releases (honest)",
        "outage",
        "drain",
        "result",
    ):
        out.add_column(column)
    for t in trials:
        c = t.conservation
        out.add_row(
            t.fault,
            str(t.jobs),
            str(t.in_flight),
            f"{t.jobs - len(t.not_terminal)}/{t.jobs}" if not t.error else "-",
            ", ".join(f"{k} {v}" for k, v in sorted(t.states.items())) or t.error,
            f"{t.double_commits}/{t.double_pays}",
            "-" if c is None else ("exact" if c.ok else f"off by {c.imbalance} wei"),
            f"{t.slashes} ({t.honest_slashes})",
            f"{t.releases} ({t.honest_releases})",
            f"{t.outage:.0f} s",
            "-" if t.drain is None else f"{t.drain:.0f} s",
            "PASS" if t.ok else "FAIL",
        )
    return out


def _parse(argv: Sequence[str] | None) -> ChaosConfig:
    parser = argparse.ArgumentParser(prog="python -m marketplace.devnet.chaos", description=__doc__)
    parser.add_argument("--faults", default=",".join(f.name for f in FAULTS))
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--providers", type=int, default=4)
    parser.add_argument("--audit-bps", type=int, default=10_000)
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    jobs = args.jobs if args.jobs is not None else (6 if args.short else 30)
    if jobs < 1 or args.providers < 4:
        parser.error("--jobs must be at least 1 and --providers at least 4 (audits draw 3)")
    return ChaosConfig(
        faults=tuple(f.strip() for f in args.faults.split(",") if f.strip()),
        jobs=jobs,
        providers=args.providers,
        audit_bps=args.audit_bps,
        short=args.short,
        dir=args.dir,
        keep=args.keep,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = _parse(argv)
    # The table has a dozen columns: wide enough for them in a CI log as on a terminal.
    console = Console(width=max(Console().width, 170))
    try:
        trials = run_chaos(config, console)
    except (ChaosError, DevnetError) as exc:
        console.print(f"[red]chaos: {exc}")
        return 1
    console.print(table(trials))
    return 0 if trials and all(t.ok for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
