"""`make demo`: the marketplace end to end, with real processes and a real model.

A devnet comes up (Anvil, Redis, the contracts, the relayer, honest providers and one lazy one,
each with its Celery worker), a requester submits a batch of all-MiniLM-L6-v2 embedding jobs in
one transaction (replicas 1 and 3, every single-replica job audited), the jobs are followed to a
terminal state (nobody names an audit's verifiers: the contract draws them, stake-weighted, from
the providers outside the job, and the demo prints who was drawn for which round), and the
books are closed: per provider stake before and after, jobs, earnings and slashes; what the
requester escrowed and got back; fees, the audit pool and burned tokens; a conservation check
across every token holder and both contracts. One result is downloaded, decrypted, verified
against the provider's on-chain commitment and compared with a local run of the same model.
Then everything is stopped and the demo checks that no process is left.

    python -m marketplace.demo [--providers 6] [--jobs 8] [--audit-bps 10000] [--keep]

`run_demo` does the work and returns a `DemoReport`; tests/integration/test_e2e.py runs it with a
smaller batch and asserts on the report. Exit status 0 only when every check passes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from marketplace.devnet import processes
from marketplace.devnet.batch import SENTENCES_PER_JOB, job_drafts
from marketplace.devnet.books import Books, Conservation, conservation, read_books
from marketplace.devnet.manager import Devnet, DevnetConfig, DevnetError
from marketplace.devnet.scenarios import drawn_verifiers
from marketplace.protocol.client import JobState, Market
from marketplace.protocol.errors import DepinError
from marketplace.requester import (
    DEFAULT_PROFILE,
    JobDraft,
    JobResult,
    Requester,
    RequesterError,
    format_tokens,
)

__all__ = [
    "DemoConfig",
    "DemoConfigError",
    "DemoError",
    "DemoReport",
    "LocalCheck",
    "ProviderLine",
    "follow",
    "local_check",
    "main",
    "run_demo",
]

TOKEN = 10**18
#: Seconds the jobs may take, from submission to the last terminal state.
JOB_TIMEOUT = 240.0


class DemoError(DepinError, RuntimeError):
    """The demo could not finish (a process died, jobs did not close in time); the message names
    the logs to read."""


class DemoConfigError(DepinError, ValueError):
    """The demo's options cannot show what it claims; the message names the option to change."""


@dataclass(frozen=True)
class DemoConfig:
    #: Six, so that an audit of a replicas = 3 job can draw its 3 verifiers from the providers
    #: outside the job (executors and the requester are never drawn).
    providers: int = 6
    lazy: int = 1
    jobs: int = 8
    #: Share of single-replica jobs audited, in basis points: 10000 audits every one, so a lazy
    #: provider is caught whatever it is given.
    audit_bps: int = 10_000
    sentences_per_job: int = SENTENCES_PER_JOB
    timeout: float = JOB_TIMEOUT
    #: Where the devnet keeps its chain, keys and logs; a fresh temporary directory when None
    #: (deleted after a passing run unless `keep`).
    dir: Path | None = None
    keep: bool = False
    #: Seconds between blocks (interval mining, as on a real chain); None: a block per
    #: transaction plus one every second.
    block_time: float | None = None
    #: Blocks the relayer and the providers leave behind the head before acting.
    confirmations: int = 0
    #: Leave the devnet running after the batch (its dashboard stays up to look at); stop it
    #: with `depin devnet down --dir <dir>/devnet`.
    keep_up: bool = False

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise DemoConfigError("--jobs must be at least 1")
        # A lazy verifier outvoted in a three-seat round keeps its stake (DESIGN, Verification
        # v2), so only a job a cheat runs alone is sure to catch it: every provider needs one.
        if self.lazy and self.jobs <= self.providers:
            raise DemoConfigError(
                f"with a lazy provider, --jobs must be at least --providers + 1 "
                f"({self.providers + 1}): one job alone for every provider, then a job of three "
                f"replicas; got --jobs {self.jobs}"
            )


# ---------------------------------------------------------------------------- following


@dataclass
class _Row:
    job_id: int
    replicas: int
    sentences: int
    state: JobState = JobState.OPEN
    executors: tuple[str, ...] = ()
    verifiers: tuple[str, ...] = ()
    since: float = field(default_factory=time.monotonic)


def _state_style(state: JobState) -> str:
    if state is JobState.SETTLED:
        return "green"
    if state in (JobState.REFUNDED, JobState.EXPIRED):
        return "yellow"
    if state is JobState.AUDITING:
        return "magenta"
    return "cyan"


def _names(addresses: Sequence[str], names: dict[str, str]) -> str:
    return ", ".join(names.get(a.lower(), a[:10]) for a in addresses) or "·"


def _progress_table(rows: Sequence[_Row], started: float, names: dict[str, str]) -> Group:
    table = Table(title="jobs", title_justify="left", expand=False)
    for column, justify in (
        ("job", "right"),
        ("replicas", "right"),
        ("sentences", "right"),
        ("state", "left"),
        ("executors", "left"),
        ("verifiers", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            str(r.job_id),
            str(r.replicas),
            str(r.sentences),
            Text(r.state.name.lower(), style=_state_style(r.state)),
            _names(r.executors, names),
            _names(r.verifiers, names),
        )
    done = sum(r.state.terminal for r in rows)
    width = 30
    filled = width * done // max(len(rows), 1)
    bar = Text(f"[{'#' * filled}{'.' * (width - filled)}] ", style="bold")
    bar.append(f"{done}/{len(rows)} terminal, {time.monotonic() - started:.0f} s")
    return Group(table, bar)


def follow(
    devnet: Devnet,
    market: Market,
    jobs: dict[int, JobDraft],
    names: dict[str, str],
    console: Console,
    *,
    timeout: float = JOB_TIMEOUT,
    poll: float = 0.5,
) -> dict[int, JobState]:
    """Shows the jobs' states (a live table, one line per change) until every job is terminal.
    Raises DemoError when a devnet process exits or `timeout` seconds pass."""
    rows = [
        _Row(job_id, draft.replicas, len(draft.sentences or ())) for job_id, draft in jobs.items()
    ]
    started = time.monotonic()
    deadline = started + timeout
    with Live(_progress_table(rows, started, names), console=console, refresh_per_second=4) as live:
        while True:
            for row in rows:
                if row.state.terminal:
                    continue
                job = market.job(row.job_id)
                state = job.state
                # Read after the state: an assignment landing in between shows next round.
                parts = market.participants(row.job_id) if state is not JobState.OPEN else []
                executors = tuple(p.provider for p in parts[: row.replicas])
                verifiers = tuple(p.provider for p in parts[row.replicas :])
                if state != row.state or (executors, verifiers) != (row.executors, row.verifiers):
                    extra = ""
                    if executors and not row.executors:
                        extra = f" (executors {_names(executors, names)})"
                    elif len(verifiers) > len(row.verifiers):
                        drawn = verifiers[len(row.verifiers) :]
                        extra = f" (audit round {job.round}: drew {_names(drawn, names)})"
                    if state != row.state or extra:
                        move = (
                            f"{row.state.name.lower()} -> {state.name.lower()}"
                            if state != row.state
                            else state.name.lower()
                        )
                        live.console.print(
                            f"  job {row.job_id}: {move}{extra}  "
                            f"[{time.monotonic() - started:.0f} s]"
                        )
                    row.state, row.executors, row.verifiers = state, executors, verifiers
            live.update(_progress_table(rows, started, names))
            if all(r.state.terminal for r in rows):
                break
            for record, code in devnet.exited():
                raise DemoError(
                    f"{record.name} exited with code {code} while jobs were running; "
                    f"see {record.log}"
                )
            if time.monotonic() > deadline:
                stuck = ", ".join(
                    f"job {r.job_id} {r.state.name.lower()}" for r in rows if not r.state.terminal
                )
                raise DemoError(
                    f"jobs not terminal after {timeout:.0f} s ({stuck}); read "
                    f"{devnet.dir / 'logs' / 'relayer.log'} and the provider logs in "
                    f"{devnet.dir / 'logs'}"
                )
            time.sleep(poll)
    console.print()
    return {r.job_id: r.state for r in rows}


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LocalCheck:
    """A downloaded result against the same model run here."""

    job_id: int
    provider: str
    remote_digest: bytes
    local_digest: bytes
    max_abs_diff: float
    min_cosine: float

    @property
    def ok(self) -> bool:
        return self.remote_digest == self.local_digest


def local_check(result: JobResult, sentences: Sequence[str]) -> LocalCheck:
    """Runs the embed job's sentences through the same model on this machine's CPU (the
    devnet's profile) and compares digests and values."""
    # Read when the Hugging Face stack is first imported: no "Loading weights" bar.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    from marketplace.protocol.digest import digest
    from provider.runtime.embed import embed

    local = embed(list(sentences), batch_size=32, device=torch.device("cpu"))
    mine = local["embeddings"].astype(np.float64)
    theirs = np.asarray(result.outputs["embeddings"], dtype=np.float64)
    cosine = (mine * theirs).sum(axis=1) / (
        np.linalg.norm(mine, axis=1) * np.linalg.norm(theirs, axis=1)
    )
    return LocalCheck(
        job_id=result.job_id,
        provider=result.provider,
        remote_digest=result.digest,
        local_digest=digest(DEFAULT_PROFILE, local),
        max_abs_diff=float(np.abs(mine - theirs).max()),
        min_cosine=float(cosine.min()),
    )


# ---------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class ProviderLine:
    name: str
    address: str
    behavior: str
    stake_before: int
    stake_after: int
    #: Participations as executor and as audit verifier, from the jobs' participant lists.
    executed: int
    verified: int
    #: Registry counters gained during the run.
    jobs_done: int
    jobs_slashed: int
    #: Change of wallet + credits (payments and rewards).
    earned: int


@dataclass
class DemoReport:
    directory: Path
    job_ids: list[int] = field(default_factory=list)
    replicas: dict[int, int] = field(default_factory=dict)
    sentences: dict[int, tuple[str, ...]] = field(default_factory=dict)
    states: dict[int, JobState] = field(default_factory=dict)
    providers: list[ProviderLine] = field(default_factory=list)
    before: Books | None = None
    after: Books | None = None
    requester: str = ""
    #: Lowercased address -> name (provider-N, requester).
    names: dict[str, str] = field(default_factory=dict)
    conservation: Conservation | None = None
    #: Job id -> (audit round, verifier addresses the contract drew) of each audit round.
    audits: dict[int, list[tuple[int, list[str]]]] = field(default_factory=dict)
    #: Job id -> providers slashed in it (ProviderSlashed events).
    slashed: dict[int, list[str]] = field(default_factory=dict)
    #: Every settled job's verified result (or why it failed to verify).
    results: dict[int, JobResult | str] = field(default_factory=dict)
    local: LocalCheck | None = None
    #: Process groups still alive after the devnet was stopped.
    left_running: list[int] = field(default_factory=list)
    #: The devnet was left running on purpose (`--keep`).
    kept_up: bool = False
    #: The relayer's dashboard of this run's devnet.
    dashboard_url: str = ""
    seconds: float = 0.0

    def checks(self) -> list[tuple[str, bool]]:
        """(what, passed) for every claim the demo makes."""
        lazy = [p for p in self.providers if p.behavior != "honest"]
        honest = [p for p in self.providers if p.behavior == "honest"]
        settled = [j for j, s in self.states.items() if s is JobState.SETTLED]
        return [
            (
                f"every job terminal ({len(self.job_ids)} jobs)",
                bool(self.job_ids) and all(s.terminal for s in self.states.values()),
            ),
            (
                "tokens conserved across every account and both contracts (exact, in wei)",
                self.conservation is not None and self.conservation.ok,
            ),
            (
                "the lazy provider was slashed",
                bool(lazy)
                and all(p.jobs_slashed >= 1 and p.stake_after < p.stake_before for p in lazy),
            ),
            (
                "the lazy provider was caught in an audit by drawn verifiers",
                bool(lazy) and all(self._caught_by_drawn_verifiers(p.address) for p in lazy),
            ),
            (
                "no honest provider was slashed",
                bool(honest)
                and all(p.jobs_slashed == 0 and p.stake_after == p.stake_before for p in honest),
            ),
            (
                f"every settled job's result decrypts and verifies ({len(settled)} jobs)",
                bool(settled) and all(isinstance(self.results.get(j), JobResult) for j in settled),
            ),
            (
                "a downloaded result is bit-exact with a local run of the model",
                self.local is not None and self.local.ok,
            ),
            (
                ("devnet left running (--keep)", True)
                if self.kept_up
                else ("no process left running", not self.left_running)
            ),
        ]

    def _caught_by_drawn_verifiers(self, address: str) -> bool:
        """Whether `address` was slashed in a job whose audit the contract staffed (at least
        one round with drawn verifiers), as the executor or as one of the verifiers."""
        return any(
            address.lower() in (a.lower() for a in self.slashed.get(job_id, []))
            and any(who for _, who in rounds)
            for job_id, rounds in self.audits.items()
        )

    @property
    def ok(self) -> bool:
        return all(passed for _, passed in self.checks())


def _settle_books(report: DemoReport, devnet: Devnet, market: Market) -> None:
    """Fills the per-provider lines from the books and the jobs' participant lists."""
    assert report.before is not None and report.after is not None
    executed: dict[str, int] = {}
    verified: dict[str, int] = {}
    for job_id in report.job_ids:
        replicas = report.replicas[job_id]
        for i, p in enumerate(market.participants(job_id)):
            book = executed if i < replicas else verified
            book[p.provider.lower()] = book.get(p.provider.lower(), 0) + 1
    for record in devnet.state.providers:
        b, a = report.before.holdings[record.address], report.after.holdings[record.address]
        report.providers.append(
            ProviderLine(
                name=record.name,
                address=record.address,
                behavior=record.behavior,
                stake_before=b.stake,
                stake_after=a.stake,
                executed=executed.get(record.address.lower(), 0),
                verified=verified.get(record.address.lower(), 0),
                jobs_done=a.jobs_done - b.jobs_done,
                jobs_slashed=a.jobs_slashed - b.jobs_slashed,
                earned=(a.wallet + a.credits) - (b.wallet + b.credits),
            )
        )


def _record_audits(report: DemoReport, market: Market) -> None:
    """Who the contract drew for each audit round, and who was slashed, per job."""
    start = market.deployment.block
    for job_id in report.job_ids:
        rounds = drawn_verifiers(market, job_id)
        if rounds:
            report.audits[job_id] = rounds
        slashed = market.providers_slashed(job_id, from_block=start)
        if slashed:
            report.slashed[job_id] = [s.provider for s in slashed]


def _fetch_results(report: DemoReport, requester: Requester) -> None:
    """Every settled or refunded job's result: a refunded job's verifiers announced theirs."""
    for job_id in report.job_ids:
        if report.states[job_id] not in (JobState.SETTLED, JobState.REFUNDED):
            continue
        try:
            report.results[job_id] = requester.result(job_id)
        except (RequesterError, DepinError) as exc:
            report.results[job_id] = f"{type(exc).__name__}: {exc}"


def _pick_for_local_check(report: DemoReport) -> JobResult | None:
    """A verified result, preferring a replicas=3 job (three providers agreed on it)."""
    verified = [r for r in report.results.values() if isinstance(r, JobResult) and r.ok]
    verified.sort(key=lambda r: (-report.replicas[r.job_id], r.job_id))
    return verified[0] if verified else None


def run_demo(config: DemoConfig, console: Console) -> DemoReport:
    """Brings the devnet up, runs the batch to the end, closes the books, fetches and verifies
    the results, stops the devnet (with `keep_up`, leaves it running once the batch finished)
    and runs the local model check. Raises DemoError or DevnetError when it cannot finish; the
    devnet is stopped then, whatever `keep_up` says."""
    started = time.monotonic()
    directory = config.dir or Path(tempfile.mkdtemp(prefix="depin-demo-"))
    report = DemoReport(directory=directory)
    devnet_config = DevnetConfig(
        dir=directory / "devnet",
        providers=config.providers,
        lazy=config.lazy,
        audit_bps=config.audit_bps,
        block_time=config.block_time,
        confirmations=config.confirmations,
        fresh=True,
    )
    console.rule("[bold]devnet")
    console.print(f"  directory {devnet_config.dir} (state, keys, logs/)")
    devnet = Devnet.up(devnet_config, progress=lambda line: console.print(f"  {line}"))
    report.dashboard_url = devnet.api_url
    console.print(f"  dashboard {devnet.api_url}/ (live; jobs, providers, the market's books)")
    pgids = [p.pgid for p in devnet.state.processes]
    finished = False
    try:
        _run_batch(report, config, devnet, console)
        finished = True
    finally:
        # A failed batch stops the devnet even with --keep: its logs say what went wrong.
        if config.keep_up and finished:
            report.kept_up = True
        else:
            with contextlib.suppress(DevnetError):
                devnet.down()
            report.left_running = [g for g in pgids if processes.group_alive(g)]
    chosen = _pick_for_local_check(report)
    if chosen is not None:
        console.print(f"running job {chosen.job_id}'s sentences through the model here ...")
        report.local = local_check(chosen, report.sentences[chosen.job_id])
    report.seconds = time.monotonic() - started
    return report


def _run_batch(report: DemoReport, config: DemoConfig, devnet: Devnet, console: Console) -> None:
    params = devnet.owner().params()
    names = {p.address.lower(): p.name for p in devnet.state.providers}
    behaviors = {p.name: p.behavior for p in devnet.state.providers}
    account = devnet.requester_account()
    names[account.address.lower()] = "requester"
    market = devnet.owner()
    # Every address that can hold tokens on this devnet: the list is checked complete against
    # the supply (Books.unaccounted).
    addresses = [
        account.address,
        *(p.address for p in devnet.state.providers),
        devnet.state.deployer["address"],
        devnet.state.matcher,
    ]
    providers = [p.address for p in devnet.state.providers]
    console.print(
        f"  market: audit rate {params.audit_bps / 100:.0f} %, challenge window "
        f"{params.challenge_window} s, reveal window {params.reveal_window} s; "
        + ", ".join(f"{n} {b}" for n, b in behaviors.items())
    )
    report.requester = account.address
    report.names = names
    report.before = read_books(market, addresses, providers)

    console.rule("[bold]jobs")
    drafts = job_drafts(
        config.jobs, providers=config.providers, sentences_per_job=config.sentences_per_job
    )
    with Requester(
        devnet.w3, devnet.deployment, account, devnet.api_url, poll_interval=0.5
    ) as requester:
        ids = requester.submit_many([d for d, _ in drafts])
        report.job_ids = ids
        for job_id, (draft, sentences) in zip(ids, drafts, strict=True):
            report.replicas[job_id] = draft.replicas
            report.sentences[job_id] = sentences
        console.print(
            f"  submitted {len(ids)} embed jobs in one transaction (ids {ids[0]}..{ids[-1]}; "
            f"replicas {[d.replicas for d, _ in drafts]}; {config.sentences_per_job} sentences "
            "each)"
        )
        jobs = {job_id: draft for job_id, (draft, _) in zip(ids, drafts, strict=True)}
        report.states = follow(devnet, market, jobs, names, console, timeout=config.timeout)
        report.after = read_books(market, addresses, providers)
        report.conservation = conservation(report.before, report.after)
        _settle_books(report, devnet, market)
        _record_audits(report, market)
        _fetch_results(report, requester)


# ---------------------------------------------------------------------------- printing


def _tokens(amount: int, *, signed: bool = True, places: int = 6) -> str:
    """Whole tokens, rounded to `places` decimals for the tables (the conservation line gives
    exact wei); "·" for zero."""
    if amount == 0:
        return "·"
    text = f"{Decimal(amount) / TOKEN:,.{places}f}".rstrip("0").rstrip(".")
    if text in ("0", "-0"):
        text = format_tokens(amount)
    return f"+{text}" if signed and amount > 0 else text


def settlement_table(report: DemoReport) -> Table:
    table = Table(
        title="settlement",
        title_justify="left",
        caption="executed / verified: participations as executor / audit verifier; "
        "done / slashed: the registry's counters; earned: wallet + market credits",
        caption_justify="left",
    )
    table.add_column("provider")
    table.add_column("behavior")
    table.add_column("stake before", justify="right")
    table.add_column("stake after", justify="right")
    table.add_column("executed", justify="right")
    table.add_column("verified", justify="right")
    table.add_column("done", justify="right")
    table.add_column("slashed", justify="right")
    table.add_column("earned", justify="right")
    for p in report.providers:
        style = "red" if p.jobs_slashed else ""
        table.add_row(
            p.name,
            p.behavior,
            _tokens(p.stake_before, signed=False),
            _tokens(p.stake_after, signed=False),
            str(p.executed),
            str(p.verified),
            str(p.jobs_done),
            str(p.jobs_slashed),
            _tokens(p.earned),
            style=style,
        )
    return table


def money_table(report: DemoReport) -> Table:
    assert report.before is not None and report.after is not None
    b, a = report.before, report.after
    req_b, req_a = b.holdings[report.requester], a.holdings[report.requester]
    table = Table(title="requester and protocol", title_justify="left")
    table.add_column("account")
    table.add_column("change", justify="right")
    table.add_column("what", style="dim")
    table.add_row("requester wallet", _tokens(req_a.wallet - req_b.wallet), "escrow pulled")
    table.add_row(
        "requester credits",
        _tokens(req_a.credits - req_b.credits),
        "refunds, unused max price, slash compensation",
    )
    table.add_row(
        "requester net",
        _tokens(req_a.total - req_b.total),
        "what the batch cost",
    )
    table.add_row(
        "audit pool", _tokens(a.audit_pool - b.audit_pool), "audit fees in, verifiers out"
    )
    table.add_row("protocol fees", _tokens(a.protocol_fees - b.protocol_fees), "")
    table.add_row("challenge bonds", _tokens(a.bonds - b.bonds), "")
    table.add_row("burned", _tokens(b.supply - a.supply, signed=False), "share of every slash")
    return table


def audit_lines(report: DemoReport) -> list[str]:
    """One line per audit round of each audited job: who the contract drew, who was slashed."""
    lines = []

    def name(address: str) -> str:
        return report.names.get(address.lower(), address[:10])

    for job_id in sorted(report.audits):
        state = report.states.get(job_id, JobState.NONE).name.lower()
        slashed = ", ".join(name(a) for a in report.slashed.get(job_id, [])) or "nobody"
        for round_, who in report.audits[job_id]:
            drawn = ", ".join(name(a) for a in who) or "nobody (not staffed in time)"
            lines.append(
                f"job {job_id} (replicas {report.replicas.get(job_id, '?')}, {state}): audit "
                f"round {round_} drawn verifiers {drawn}; slashed in the job: {slashed}"
            )
    return lines


def print_audits(report: DemoReport, console: Console) -> None:
    lines = audit_lines(report)
    for line in lines:
        console.print(f"  {line}", highlight=False)
    if not lines:
        console.print("  no job was audited")


def print_report(report: DemoReport, console: Console) -> None:
    console.rule("[bold]books")
    states: dict[str, int] = {}
    for s in report.states.values():
        states[s.name.lower()] = states.get(s.name.lower(), 0) + 1
    console.print("  " + ", ".join(f"{n} {k}" for k, n in sorted(states.items())))
    console.print(settlement_table(report))
    if report.before is not None and report.after is not None:
        console.print(money_table(report))
    c = report.conservation
    if c is not None:
        line = (
            f"conservation: accounts {c.accounts:+d} wei + pools {c.pools:+d} wei + burned "
            f"{c.burned:+d} wei = {c.imbalance:+d} wei; supply held by unlisted addresses "
            f"{c.unaccounted[0]}/{c.unaccounted[1]}; market owes - holds {c.market_shortfall}, "
            f"registry holds - stakes {c.registry_shortfall[0]}/{c.registry_shortfall[1]}"
        )
        console.print(line, style="green" if c.ok else "bold red")

    console.rule("[bold]audits")
    print_audits(report, console)

    console.rule("[bold]results")
    for job_id, result in sorted(report.results.items()):
        state = report.states[job_id].name.lower()
        if isinstance(result, JobResult):
            who = report.names.get(result.provider.lower(), result.provider)
            console.print(
                f"  job {job_id} ({state}, replicas {report.replicas[job_id]}): decrypted, "
                f"digest 0x{result.digest.hex()[:16]}... matches {who}'s commitment"
            )
        else:
            console.print(f"  job {job_id} ({state}): [red]{result}[/]")
    if report.local is not None:
        lc = report.local
        verdict = "[green]equal (bit-exact)[/]" if lc.ok else "[red]DIFFERENT[/]"
        console.print(
            f"  local run of job {lc.job_id}: digest 0x{lc.local_digest.hex()[:16]}... "
            f"{verdict}; max |diff| {lc.max_abs_diff:.3g}, min cosine {lc.min_cosine:.9f}"
        )

    console.rule("[bold]checks")
    for what, passed in report.checks():
        console.print(f"  {'[green]PASS[/]' if passed else '[bold red]FAIL[/]'}  {what}")
    console.print(f"  {report.seconds:.0f} s in all")


# ---------------------------------------------------------------------------- entry point


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so the devnet is stopped as on Ctrl-C."""

    def handler(signum: int, frame: FrameType | None) -> Any:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(config: DemoConfig) -> int:
    """Runs the demo and prints its report; the exit status (0 only when every check passed)."""
    # Piped output (CI, a log file) gets room for the tables instead of 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    if config.dir is None:
        config = replace(config, dir=Path(tempfile.mkdtemp(prefix="depin-demo-")))
    assert config.dir is not None
    try:
        with _sigterm_as_interrupt():
            report = run_demo(config, console)
    except KeyboardInterrupt:
        console.print(f"\n[yellow]interrupted; the devnet was stopped. Logs: {config.dir}[/]")
        return 130
    except (DemoError, DevnetError, DepinError) as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        console.print(f"logs kept in {config.dir / 'devnet' / 'logs'}")
        return 1
    print_report(report, console)
    if not report.ok:
        console.print(f"[bold red]some checks failed[/]; logs kept in {config.dir / 'devnet'}")
        if report.kept_up:
            console.print(
                "devnet still running; stop it with "
                f"`depin devnet down --dir {config.dir / 'devnet'}`"
            )
        return 1
    if report.kept_up:
        console.print(
            f"devnet still running: dashboard {report.dashboard_url}/ ; stop it with "
            f"`depin devnet down --dir {config.dir / 'devnet'}`"
        )
    elif config.keep:
        console.print(f"devnet directory kept: {config.dir / 'devnet'}")
    else:
        shutil.rmtree(config.dir, ignore_errors=True)
    return 0


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(
    help="Runs the marketplace end to end on a fresh local devnet (`make demo`), closes its "
    "books and checks them; exit status 0 only when every check passes."
)
def demo(
    providers: Annotated[int, typer.Option(help="Providers on the devnet.")] = DemoConfig.providers,
    lazy: Annotated[int, typer.Option(help="How many of them are lazy.")] = DemoConfig.lazy,
    jobs: Annotated[int, typer.Option(help="Jobs in the batch.")] = DemoConfig.jobs,
    audit_bps: Annotated[
        int, typer.Option(help="Share of single-replica jobs audited, in basis points.")
    ] = DemoConfig.audit_bps,
    timeout: Annotated[
        float, typer.Option(help="Seconds the jobs may take to reach a terminal state.")
    ] = DemoConfig.timeout,
    dir: Annotated[Path | None, typer.Option(help="Devnet directory (kept).")] = None,
    keep: Annotated[
        bool,
        typer.Option(
            help="Keep the devnet running after the demo, with its dashboard, and its directory "
            "(stop it with `depin devnet down --dir DIR/devnet`)."
        ),
    ] = False,
    block_time: Annotated[
        float | None,
        typer.Option(help="Seconds between blocks (interval mining, as on a real chain)."),
    ] = None,
    confirmations: Annotated[
        int, typer.Option(help="Blocks the relayer and providers leave behind the head.")
    ] = 0,
) -> None:
    try:
        config = DemoConfig(
            providers=providers,
            lazy=lazy,
            jobs=jobs,
            audit_bps=audit_bps,
            timeout=timeout,
            dir=dir,
            keep=keep or dir is not None,
            block_time=block_time,
            confirmations=confirmations,
            keep_up=keep,
        )
    except DemoConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    raise typer.Exit(main(config))


if __name__ == "__main__":
    app()
