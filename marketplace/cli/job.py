"""`depin job`: submit jobs, follow them, fetch their verified results, challenge, cancel, list.

A thin layer over `marketplace.requester.Requester`. Configuration comes from
`DEPIN_REQUESTER_*` variables (see marketplace.requester.settings); the options below override
them. The wallet is `--wallet NAME` (a keystore written by `depin wallet new|import`),
`--keystore PATH`, or DEPIN_REQUESTER_KEYSTORE_FILE / DEPIN_REQUESTER_PRIVATE_KEY; a keystore's
password comes from `--password-file`, DEPIN_REQUESTER_KEYSTORE_PASSWORD or a prompt.

Amounts a person types or reads are in tokens, the unit printed (`--max-price 0.001`); `--json`
output and the relayer's API give base units (1 token = 10^18) as decimal strings. Every command
takes `--json`; errors print `error: <message>` on stderr and exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from pydantic import SecretStr

from marketplace.cli.common import (
    JsonOpt,
    PasswordFileOpt,
    command,
    deployment_option,
    emit,
    errors,
    fail,
    read_password,
    relayer_url_option,
    rpc_url_option,
)
from marketplace.protocol.tokens import UINT80_MAX, format_tokens, parse_tokens

if TYPE_CHECKING:
    from marketplace.requester import JobResult, JobStatus, Requester, RequesterSettings

app = typer.Typer(name="job", no_args_is_help=True, help="Submit and follow compute jobs.")

_ENV = "DEPIN_REQUESTER_"
RpcOpt = Annotated[str | None, rpc_url_option(_ENV)]
DeploymentOpt = Annotated[Path | None, deployment_option(_ENV)]
RelayerOpt = Annotated[str | None, relayer_url_option(_ENV)]
WalletOpt = Annotated[
    str | None,
    typer.Option(
        "--wallet",
        help="Wallet name in DEPIN_REQUESTER_WALLET_DIR (`depin wallet new`), or ape:ALIAS for "
        "an Ape account.",
    ),
]
KeystoreOpt = Annotated[
    Path | None, typer.Option("--keystore", help="Keystore file (DEPIN_REQUESTER_KEYSTORE_FILE).")
]
JobIdArg = Annotated[int, typer.Argument(help="The job id.", min=1)]
UntilOpt = Annotated[
    str,
    typer.Option(
        "--until",
        help="terminal (default): until the job is settled or refunded; result: until the first "
        "result is available, which an audit may still reverse.",
    ),
]

#: States in which a job has a committed result (the requester package's RESULT_STATES, by name).
_RESULT_NAMES = frozenset({"COMMITTED", "AUDITING", "REVEALING", "SETTLED"})
_STEPS = {"open": 1, "assigned": 2, "committed": 3, "auditing": 3, "revealing": 3}


@dataclass(frozen=True)
class ChainOptions:
    """Which chain and deployment the requester's commands use (see `common.command`)."""

    rpc_url: RpcOpt = None
    deployment: DeploymentOpt = None

    def settings(self, **options: Any) -> RequesterSettings:
        """RequesterSettings from the environment with the options that were given on top."""
        from marketplace.requester import RequesterSettings  # web3 kept off `--help`

        given = {"rpc_url": self.rpc_url, "deployment_file": self.deployment, **options}
        return RequesterSettings(**{k: v for k, v in given.items() if v is not None})


@dataclass(frozen=True)
class RequesterOptions(ChainOptions):
    """The options of every command that acts as the requester."""

    relayer_url: RelayerOpt = None
    wallet: WalletOpt = None
    keystore: KeystoreOpt = None
    password_file: PasswordFileOpt = None

    def open(self, *, watch_only: bool = False) -> Requester:
        """The Requester these options and the DEPIN_REQUESTER_* variables configure; asks for
        the keystore's password where needed. `watch_only` (commands that only read): a
        keystore given without its password is not decrypted, its address is enough. The
        caller closes it (`with conn.open() as req`)."""
        from marketplace.protocol.keys import keystore_address
        from marketplace.requester import Requester

        keystore = self.keystore
        with errors():
            settings = self.settings(relayer_url=self.relayer_url)
            if self.wallet is not None and keystore is not None:
                raise fail("give either --wallet or --keystore, not both")
            if self.wallet is not None:
                keystore = settings.wallet_path(self.wallet)
            if keystore is not None:
                settings = settings.model_copy(
                    update={"keystore_file": keystore, "private_key": None}
                )
            if (
                watch_only
                and settings.keystore_file is not None
                and self.password_file is None
                and settings.keystore_password is None
            ):
                return Requester.connect(
                    rpc_url=settings.rpc_url,
                    deployment=settings.deployment_file,
                    account=keystore_address(settings.keystore_file),
                    relayer_url=settings.relayer_url,
                    poll_interval=settings.poll_interval,
                )
            if settings.keystore_file is not None and (
                self.password_file is not None or settings.keystore_password is None
            ):
                password = read_password(self.password_file, "DEPIN_REQUESTER_KEYSTORE_PASSWORD")
                settings = settings.model_copy(update={"keystore_password": SecretStr(password)})
            return Requester.from_settings(settings)


def _when(timestamp: int) -> str:
    """A deadline for people: UTC time and the unix seconds; "none" for 0."""
    if not timestamp:
        return "none"
    import time

    return f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(timestamp))} ({timestamp})"


def _finality(status: JobStatus) -> str:
    """What a state means for the requester: final or not, and why."""
    state = status.state
    if state.name == "SETTLED" and status.failure:
        return (
            f"final: FAILED ({status.failure}): the job could not run as specified; the "
            f"providers were paid for finding that (`depin job result {status.job_id}` for the "
            "message)"
        )
    if state.name == "SETTLED":
        return "final: paid to the upheld result"
    if state.terminal:
        return "final: no result was upheld, the escrow is refunded"
    if status.result_available:
        return "result available, not final: the challenge window or an audit may reverse it"
    return "not final"


def _status_lines(status: JobStatus) -> list[str]:
    data = status.model_dump(mode="json")
    lines = [
        f"job {data['job_id']}: {data['state']} ({_finality(status)})",
        f"  requester {data['requester']}",
        f"  units {data['units']} x replicas {data['replicas']}, max price "
        f"{format_tokens(status.max_price_per_unit)} tokens per unit, escrow "
        f"{format_tokens(status.escrow)} tokens",
        f"  profile {data['profile']}, deadline {_when(status.deadline)}",
    ]
    if status.waiting:
        lines.append(f"  waiting: {status.waiting}")
    for p in data["participants"]:
        role = "executor" if p["executor"] else "verifier"
        lines.append(f"  {role} {p['provider']}: {'committed' if p['committed'] else 'pending'}")
    if data["history"] is not None:
        for h in data["history"]:
            lines.append(f"  block {h.get('block_number')}: {h.get('event')} -> {h.get('state')}")
    elif data["results"] is None:
        lines.append("  (relayer unreachable: chain state only)")
    return lines


def _wait_with_progress(
    req: Requester,
    job_id: int,
    timeout: float,
    as_json: bool,
    until: Literal["result", "terminal"] = "result",
) -> JobStatus:
    """`Requester.wait` with a progress bar through the states (none with --json)."""
    if as_json:
        return req.wait(job_id, until=until, timeout=timeout)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("job {task.fields[job]}: {task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("submitted", total=4, job=job_id)

        def on_state(state: Any) -> None:
            name = state.name.lower()
            step = 4 if state.terminal else _STEPS.get(name, 0)
            label = {
                "open": "open, waiting for a provider",
                "assigned": "assigned, running",
                "committed": "result committed, fetching the notice",
                "auditing": "under audit",
                "revealing": "revealing",
            }.get(name, name)
            progress.update(task, completed=step, description=label)

        status = req.wait(job_id, until=until, timeout=timeout, on_state=on_state)
        final = status.state.name.lower()
        if status.result_available and not status.state.terminal:
            final += ", result available (not final)"
        progress.update(task, completed=4, description=final)
    return status


@command(app, "submit", conn=RequesterOptions)
def submit(
    kind: Annotated[str, typer.Argument(help="embed | torchscript | export | matmul.")],
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Input files: embed .txt/.json; torchscript and export one .safetensors."
        ),
    ] = None,
    max_price: Annotated[
        str,
        typer.Option(
            "--max-price", help="Most paid per unit of work, in tokens (e.g. 0.001, the default)."
        ),
    ] = "0.001",
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="embed: model name; torchscript: module file; export: .pt2 program file; or "
            "the sha256 of one uploaded.",
        ),
    ] = None,
    sentence: Annotated[
        list[str] | None,
        typer.Option("--sentence", help="embed: a sentence (repeatable) instead of input files."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="A parameter as name=value (repeatable), e.g. n=1024."),
    ] = None,
    units: Annotated[
        int | None, typer.Option("--units", help="Units to pay for (default: from the kind).")
    ] = None,
    replicas: Annotated[int, typer.Option("--replicas", help="Providers that run it (1-5).")] = 1,
    profile: Annotated[str | None, typer.Option("--profile", help="Determinism profile.")] = None,
    accept_window: Annotated[
        int, typer.Option("--accept-window", help="Seconds the job waits for a provider.")
    ] = 3_600,
    exec_window: Annotated[
        int, typer.Option("--exec-window", help="Seconds a provider has to commit.")
    ] = 3_600,
    min_vram: Annotated[int, typer.Option("--min-vram", help="GiB of GPU memory needed.")] = 0,
    no_permit: Annotated[
        bool, typer.Option("--no-permit", help="Approve in a transaction instead of a permit.")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait until the job is final (see --until), then download and verify its "
            "result; exits 1 when the job ends without one or the result reports a failure.",
        ),
    ] = False,
    until: UntilOpt = "terminal",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds --wait waits.")] = 3_600,
    out: Annotated[
        Path | None, typer.Option("--out", help="With --wait: write the verified result here.")
    ] = None,
    shard: Annotated[
        int | None,
        typer.Option(
            "--shard",
            help="Split the input set (embed: the sentences; torchscript, export: the "
            "safetensors batch along dimension 0) into N jobs created in one transaction; "
            "`depin job result GROUP --group` merges them.",
            min=1,
        ),
    ] = None,
    *,
    conn: RequesterOptions,
    as_json: JsonOpt = False,
) -> None:
    """Upload the inputs and spec, escrow the payment and create the job (or N shard jobs)."""
    from marketplace.requester import DEFAULT_PROFILE, JobDraft, parse_parameter

    if out is not None and not wait:
        raise fail("--out needs --wait (or fetch later with `depin job result ID --out PATH`)")
    goal = _goal(until)
    with errors():
        price = parse_tokens(max_price, what="--max-price", maximum=UINT80_MAX)
        parameters = dict(parse_parameter(p) for p in param or [])
        draft = JobDraft(
            kind=kind,
            max_price_per_unit=price,
            inputs=tuple(inputs or ()),
            sentences=tuple(sentence) if sentence else None,
            model=model,
            parameters=parameters,
            units=units,
            replicas=replicas,
            profile=profile or DEFAULT_PROFILE,
            accept_window=accept_window,
            exec_window=exec_window,
            min_vram_gib=min_vram,
        )
        if shard is not None:
            _submit_sharded(conn, draft, shard, not no_permit, wait, goal, timeout, out, as_json)
            return
        with conn.open() as req:
            (job_id,) = req.submit_many([draft], use_permit=not no_permit)
            if not as_json:
                typer.echo(f"job {job_id} created")
            status = _wait_with_progress(req, job_id, timeout, as_json, goal) if wait else None
            status = status or req.status(job_id)
            result = None
            if wait and status.result_available:
                result = req.result(job_id, out)
    data: dict[str, Any] = {"job_id": job_id, "status": status.model_dump(mode="json")}
    lines = _status_lines(status)
    if result is not None:
        data["result"] = result.model_dump(mode="json")
        lines += _result_lines(result)
    emit(data, as_json, lines)
    if wait and (_ended_without_result(status) or (result is not None and not result.ok)):
        raise typer.Exit(1)


def _submit_sharded(
    conn: RequesterOptions,
    draft: Any,
    shards: int,
    use_permit: bool,
    wait: bool,
    goal: Literal["result", "terminal"],
    timeout: float,
    out: Path | None,
    as_json: bool,
) -> None:
    """`depin job submit --shard N`: quote the batch, create it, optionally wait and merge."""
    with errors(), conn.open() as req:
        _recover(req)
        plan = req.plan_shards(draft, shards)
        if not as_json:
            typer.echo(
                f"{shards} shards, units {plan.units}: escrow {format_tokens(plan.escrow)} "
                "tokens for the batch (the most it costs; the rest comes back)"
            )
        group = req.submit_shards(plan, use_permit=use_permit)
        if not as_json:
            typer.echo(
                f"shard group {group.group} created: jobs {group.job_ids} (kept in "
                f"{req.shard_store.group_folder(group.group)})"
            )
        states = (
            _wait_shards_with_progress(req, group.group, timeout, as_json, goal)
            if wait
            else req.shard_states(group.group)
        )
        merged = None
        if wait and all(s.name in _RESULT_NAMES for s in states):
            merged = req.shard_result(group.group, out)
    data: dict[str, Any] = {
        "group": group.group,
        "job_ids": group.job_ids,
        "units": plan.units,
        "escrow": str(plan.escrow),
        "states": [s.name.lower() for s in states],
    }
    lines = [f"group {group.group}: " + ", ".join(_shard_line(group.job_ids, states))]
    if merged is not None:
        data["result"] = merged.model_dump(mode="json")
        lines += _merged_lines(merged)
    emit(data, as_json, lines)
    if wait and merged is None:
        raise typer.Exit(1)


def _recover(req: Requester) -> None:
    """Settles (and reports on stderr) the groups whose submit stopped between sending the
    transaction and recording its jobs, before any group command reads the store."""
    for found in req.recover_shards():
        typer.echo(found.message, err=True)


def _shard_line(job_ids: list[int], states: list[Any]) -> list[str]:
    pairs = enumerate(zip(job_ids, states, strict=True))
    return [f"shard {i} job {j} {s.name.lower()}" for i, (j, s) in pairs]


def _wait_shards_with_progress(
    req: Requester,
    group: int,
    timeout: float,
    as_json: bool,
    until: Literal["result", "terminal"],
) -> list[Any]:
    """`Requester.wait_shards` with one progress bar over every shard (none with --json)."""
    if as_json:
        return req.wait_shards(group, until=until, timeout=timeout)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("group {task.fields[group]}: {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} shards done"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
        count = len(req.shard_group(group).shards)
        task = progress.add_task("submitted", total=count, group=group)

        def on_progress(states: list[Any]) -> None:
            names = [s.name.lower() for s in states]
            summary = ", ".join(f"{names.count(n)} {n}" for n in dict.fromkeys(names))
            done = sum(1 for s in states if s.terminal)
            progress.update(task, completed=done, description=summary)

        states = req.wait_shards(group, until=until, timeout=timeout, on_progress=on_progress)
        progress.update(task, completed=count)
    return states


def _merged_lines(merged: Any) -> list[str]:
    lines = [
        f"group {merged.group}: {len(merged.job_ids)} shard results verified, each against its "
        f"own job's commitment (jobs {list(merged.job_ids)}), merged in order"
    ]
    for name, array in sorted(merged.outputs.items()):
        lines.append(f"  {name}: {array.dtype} {tuple(array.shape)}")
    if merged.unmerged:
        lines.append(
            f"  not merged (no first dimension): {', '.join(merged.unmerged)}; read them per "
            "shard with `depin job result JOB`"
        )
    if merged.path is not None:
        lines.append(f"  written to {merged.path}")
    return lines


def _ended_without_result(status: JobStatus) -> bool:
    """Terminal without a usable result: refunded, expired, or settled on a failure."""
    return status.state.terminal and (status.state.name != "SETTLED" or bool(status.failure))


def _goal(until: str) -> Literal["result", "terminal"]:
    if until not in ("result", "terminal"):
        raise fail(f"--until is 'terminal' or 'result', not {until!r}")
    return "result" if until == "result" else "terminal"


@command(app, "status", conn=RequesterOptions)
def status(job_id: JobIdArg, *, conn: RequesterOptions, as_json: JsonOpt = False) -> None:
    """Show the job's state, participants and event history."""
    with errors(), conn.open(watch_only=True) as req:
        st = req.status(job_id)
    emit(st.model_dump(mode="json"), as_json, _status_lines(st))


@command(app, "wait", conn=RequesterOptions)
def wait_job(
    job_id: JobIdArg,
    until: UntilOpt = "terminal",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 3_600,
    *,
    conn: RequesterOptions,
    as_json: JsonOpt = False,
) -> None:
    """Wait until the job is final (or, with --until result, its first result is available);
    exits 1 when it ended without a result."""
    goal = _goal(until)
    with errors(), conn.open(watch_only=True) as req:
        st = _wait_with_progress(req, job_id, timeout, as_json, goal)
    emit(st.model_dump(mode="json"), as_json, _status_lines(st))
    if _ended_without_result(st):
        raise typer.Exit(1)


def _result_lines(result: JobResult) -> list[str]:
    if not result.ok:
        return [
            f"job {result.job_id} failed: {result.failure}"
            + (f" ({result.message})" if result.message else ""),
            f"  verified against {result.provider}'s commitment",
        ]
    lines = [
        f"job {result.job_id}: result of {result.provider} verified (digest 0x"
        f"{result.digest.hex()})"
    ]
    for name, array in sorted(result.outputs.items()):
        lines.append(f"  {name}: {array.dtype} {tuple(array.shape)}")
    if result.path is not None:
        lines.append(f"  written to {result.path}")
    for provider, reason in result.rejected:
        lines.append(f"  rejected {provider}: {reason}")
    return lines


@command(app, "result", conn=RequesterOptions)
def result(
    job_id: JobIdArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the outputs: a directory, a .safetensors file, or .npy (one output).",
        ),
    ] = None,
    group: Annotated[
        bool,
        typer.Option(
            "--group",
            help="The id is a shard group (the first job id `submit --shard` printed): verify "
            "every shard against its own commitment and merge them in order.",
        ),
    ] = False,
    *,
    conn: RequesterOptions,
    as_json: JsonOpt = False,
) -> None:
    """Download, decrypt and verify the job's result against the on-chain commitment."""
    if group:
        with errors(), conn.open() as req:
            _recover(req)
            merged = req.shard_result(job_id, out)
        emit(merged.model_dump(mode="json"), as_json, _merged_lines(merged))
        return
    with errors(), conn.open() as req:
        res = req.result(job_id, out)
    emit(res.model_dump(mode="json"), as_json, _result_lines(res))
    if not res.ok:
        raise typer.Exit(1)


@command(app, "resubmit-shard", conn=RequesterOptions)
def resubmit_shard(
    group: Annotated[int, typer.Argument(help="The shard group (its first job id).", min=1)],
    index: Annotated[int, typer.Argument(help="The shard's index, from 0.", min=0)],
    no_permit: Annotated[
        bool, typer.Option("--no-permit", help="Approve in a transaction instead of a permit.")
    ] = False,
    *,
    conn: RequesterOptions,
    as_json: JsonOpt = False,
) -> None:
    """Submit one shard of a group again, alone, after its job was refunded, expired or failed;
    the group's merge then uses the new job."""
    with errors(), conn.open() as req:
        _recover(req)
        job_id = req.resubmit_shard(group, index, use_permit=not no_permit)
        old = req.shard_group(group).shards[index].replaced[-1]
    emit(
        {"group": group, "index": index, "job_id": job_id, "replaced": old},
        as_json,
        [f"shard {index} of group {group}: job {job_id} created (replaces job {old})"],
    )


@command(app, "wait-group", conn=RequesterOptions)
def wait_group(
    group: Annotated[int, typer.Argument(help="The shard group (its first job id).", min=1)],
    until: UntilOpt = "terminal",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 3_600,
    *,
    conn: RequesterOptions,
    as_json: JsonOpt = False,
) -> None:
    """Wait until every shard of a group is final, with one progress display over all of them;
    exits 1 when a shard ended without a result (resubmit it with `resubmit-shard`)."""
    goal = _goal(until)
    with errors(), conn.open(watch_only=True) as req:
        _recover(req)
        states = _wait_shards_with_progress(req, group, timeout, as_json, goal)
        ids = req.shard_group(group).job_ids
    emit(
        {"group": group, "job_ids": ids, "states": [s.name.lower() for s in states]},
        as_json,
        [f"group {group}: " + ", ".join(_shard_line(ids, states))],
    )
    if any(s.name in ("REFUNDED", "EXPIRED") for s in states):
        raise typer.Exit(1)


@command(app, "challenge", conn=RequesterOptions)
def challenge(job_id: JobIdArg, *, conn: RequesterOptions, as_json: JsonOpt = False) -> None:
    """Challenge a committed job, posting the bond; verifiers re-run it."""
    with errors(), conn.open() as req:
        tx = req.challenge(job_id)
        state = req.status(job_id).state.name.lower()
    emit(
        {"job_id": job_id, "tx": tx, "state": state},
        as_json,
        [f"job {job_id} challenged ({tx}); now {state}"],
    )


@command(app, "cancel", conn=RequesterOptions)
def cancel(job_id: JobIdArg, *, conn: RequesterOptions, as_json: JsonOpt = False) -> None:
    """Cancel an open job; its escrow is credited back (`depin wallet withdraw`)."""
    with errors(), conn.open() as req:
        tx = req.cancel(job_id)
        credits = req.balances().credits
    emit(
        {"job_id": job_id, "tx": tx, "state": "expired", "credits": str(credits)},
        as_json,
        [f"job {job_id} cancelled ({tx}); credits now {format_tokens(credits)} tokens"],
    )


def _outcome(job: Any) -> str:
    """The result column of `job list`: what the requester got."""
    if job.failure:
        return f"FAILED: {job.failure}"
    name = job.state.name
    if name == "SETTLED":
        return "ok"
    if job.state.terminal:
        return "none (refunded)"
    return "-"


@command(app, "list", conn=RequesterOptions)
def list_jobs(
    state: Annotated[str | None, typer.Option("--state", help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Most jobs shown.", min=1)] = 50,
    source: Annotated[
        str, typer.Option("--source", help="auto | relayer | chain (JobCreated logs).")
    ] = "auto",
    *,
    conn: RequesterOptions,
    as_json: JsonOpt = False,
) -> None:
    """List this wallet's jobs, newest first."""
    from marketplace.protocol.client import JobState

    wanted = None
    if state is not None:
        try:
            wanted = JobState[state.upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in JobState if s is not JobState.NONE)
            raise fail(f"unknown state {state!r}; use one of {names}") from None
    if source not in ("auto", "relayer", "chain"):
        raise fail(f"--source is auto, relayer or chain, not {source!r}")
    src: Literal["auto", "relayer", "chain"] = (
        "relayer" if source == "relayer" else "chain" if source == "chain" else "auto"
    )
    with errors(), conn.open(watch_only=True) as req:
        jobs = req.list_jobs(state=wanted, limit=limit, source=src)
    header = (
        f"{'job':>6}  {'kind':<8} {'state':<10} {'final':<5} {'result':<24} "
        f"{'escrow':>12} {'cost':>12} {'units':>7} x{'r':<2}"
    )
    lines = (
        [header]
        + [
            f"{j.job_id:>6}  {j.kind or '?':<8} {j.state.name.lower():<10} "
            f"{'yes' if j.state.terminal else 'no':<5} {_outcome(j):<24} "
            f"{format_tokens(j.escrow):>12} "
            f"{'-' if j.cost is None else format_tokens(j.cost):>12} {j.units:>7} x{j.replicas:<2}"
            for j in jobs
        ]
        + ["amounts in tokens; cost: escrow and bond less what was credited back, once final"]
        if jobs
        else ["no jobs"]
    )
    emit({"jobs": [j.model_dump(mode="json") for j in jobs]}, as_json, lines)
