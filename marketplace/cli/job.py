"""`depin job`: submit jobs, follow them, fetch their verified results, challenge, cancel, list.

A thin layer over `marketplace.requester.Requester`. Configuration comes from
`DEPIN_REQUESTER_*` variables (see marketplace.requester.settings); the options below override
them. The wallet is `--wallet NAME` (a keystore written by `depin wallet new|import`),
`--keystore PATH`, or DEPIN_REQUESTER_KEYSTORE_FILE / DEPIN_REQUESTER_PRIVATE_KEY; a keystore's
password comes from `--password-file`, DEPIN_REQUESTER_KEYSTORE_PASSWORD or a prompt.

Amounts are in the token's base units (1 token = 10^18). Every command takes `--json`; errors
print `error: <message>` on stderr and exit 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import SecretStr, ValidationError

from marketplace.protocol.errors import DepinError

app = typer.Typer(name="job", no_args_is_help=True, help="Submit and follow compute jobs.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RpcOpt = Annotated[
    str | None, typer.Option("--rpc-url", help="JSON-RPC URL (DEPIN_REQUESTER_RPC_URL).")
]
DeploymentOpt = Annotated[
    Path | None,
    typer.Option("--deployment", help="Deployment file (DEPIN_REQUESTER_DEPLOYMENT_FILE)."),
]
RelayerOpt = Annotated[
    str | None,
    typer.Option("--relayer-url", help="Relayer API URL (DEPIN_REQUESTER_RELAYER_URL)."),
]
WalletOpt = Annotated[
    str | None,
    typer.Option(
        "--wallet", help="Wallet name in DEPIN_REQUESTER_WALLET_DIR (`depin wallet new`)."
    ),
]
KeystoreOpt = Annotated[
    Path | None, typer.Option("--keystore", help="Keystore file (DEPIN_REQUESTER_KEYSTORE_FILE).")
]
PasswordFileOpt = Annotated[
    Path | None,
    typer.Option("--password-file", help="File whose first line is the keystore password."),
]
JobIdArg = Annotated[int, typer.Argument(help="The job id.", min=1)]

_STEPS = {"open": 1, "assigned": 2, "committed": 3, "auditing": 3, "revealing": 3}


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        (f"{'.'.join(str(p) for p in e['loc'])}: " if e["loc"] else "") + e["msg"]
        for e in exc.errors()
    )


@contextmanager
def _errors() -> Iterator[None]:
    """Turns the SDK's errors into `error: <message>` and exit status 1."""
    try:
        yield
    except ValidationError as exc:
        raise _fail(_validation_message(exc)) from None
    except DepinError as exc:
        raise _fail(str(exc)) from None


def read_password(password_file: Path | None, env: str, *, confirm: bool = False) -> str:
    """A password from `password_file` (its first line), else `$env`, else a hidden prompt
    (only on a terminal: a script must not hang on a prompt it cannot answer)."""
    import os

    if password_file is not None:
        try:
            lines = password_file.read_text().splitlines()
        except OSError as exc:
            raise _fail(f"cannot read the password file {password_file}: {exc.strerror}") from None
        password = lines[0] if lines else ""
    elif env in os.environ:
        password = os.environ[env]
    elif sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    else:
        raise _fail(f"no password: pass --password-file or set {env}")
    if not password:
        raise _fail("the password is empty; choose a non-empty one")
    return password


def _requester(
    rpc_url: str | None,
    deployment: Path | None,
    relayer_url: str | None,
    wallet: str | None,
    keystore: Path | None,
    password_file: Path | None,
) -> Any:
    from marketplace.requester import Requester, RequesterSettings  # web3 kept off `--help`

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "rpc_url": rpc_url,
            "deployment_file": deployment,
            "relayer_url": relayer_url,
        }.items()
        if v is not None
    }
    with _errors():
        settings = RequesterSettings(**overrides)
        if wallet is not None and keystore is not None:
            raise _fail("give either --wallet or --keystore, not both")
        if wallet is not None:
            keystore = settings.wallet_path(wallet)
        if keystore is not None:
            settings = settings.model_copy(update={"keystore_file": keystore, "private_key": None})
        if settings.keystore_file is not None and (
            password_file is not None or settings.keystore_password is None
        ):
            password = read_password(password_file, "DEPIN_REQUESTER_KEYSTORE_PASSWORD")
            settings = settings.model_copy(update={"keystore_password": SecretStr(password)})
        return Requester.from_settings(settings)


def _emit(data: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        for line in lines:
            typer.echo(line)


def _status_lines(status: Any) -> list[str]:
    from marketplace.requester import format_tokens

    data = status.to_dict()
    lines = [
        f"job {data['job_id']}: {data['state']}"
        + (" (result available)" if data["result_available"] else ""),
        f"  requester {data['requester']}",
        f"  units {data['units']} x replicas {data['replicas']}, max price "
        f"{format_tokens(status.max_price_per_unit)} per unit, escrow "
        f"{format_tokens(status.escrow)}",
        f"  profile {data['profile']}, deadline {data['deadline']}",
    ]
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
    req: Any,
    job_id: int,
    timeout: float,
    as_json: bool,
    until: Literal["result", "terminal"] = "result",
) -> Any:
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
        final = "result available" if status.result_available else status.state.name.lower()
        progress.update(task, completed=4, description=final)
    return status


@app.command("submit")
def submit(
    kind: Annotated[str, typer.Argument(help="embed | torchscript | matmul.")],
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(help="Input files: embed .txt/.json; torchscript one .safetensors."),
    ] = None,
    max_price: Annotated[
        int, typer.Option("--max-price", help="Most paid per unit, in token base units.", min=1)
    ] = 10**15,
    model: Annotated[
        str | None,
        typer.Option("--model", help="embed: model name; torchscript: module file or its sha256."),
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
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the result is available.")] = (
        False
    ),
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds --wait waits.")] = 3_600,
    out: Annotated[
        Path | None, typer.Option("--out", help="With --wait: write the verified result here.")
    ] = None,
    rpc_url: RpcOpt = None,
    deployment: DeploymentOpt = None,
    relayer_url: RelayerOpt = None,
    wallet: WalletOpt = None,
    keystore: KeystoreOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload the inputs and spec, escrow the payment and create the job."""
    from marketplace.requester import DEFAULT_PROFILE, JobDraft, parse_parameter

    if out is not None and not wait:
        raise _fail("--out needs --wait (or fetch later with `depin job result ID --out PATH`)")
    with _errors():
        parameters = dict(parse_parameter(p) for p in param or [])
        draft = JobDraft(
            kind=kind,
            max_price_per_unit=max_price,
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
        req = _requester(rpc_url, deployment, relayer_url, wallet, keystore, password_file)
        try:
            (job_id,) = req.submit_many([draft], use_permit=not no_permit)
            if not as_json:
                typer.echo(f"job {job_id} created")
            status = _wait_with_progress(req, job_id, timeout, as_json) if wait else None
            status = status or req.status(job_id)
            result = None
            if out is not None and status.result_available:
                result = req.result(job_id, out)
        finally:
            req.close()
    data: dict[str, Any] = {"job_id": job_id, "status": status.to_dict()}
    lines = _status_lines(status)
    if result is not None:
        data["result"] = result.to_dict()
        lines += _result_lines(result)
    _emit(data, as_json, lines)
    if result is not None and not result.ok:
        raise typer.Exit(1)


@app.command("status")
def status(
    job_id: JobIdArg,
    rpc_url: RpcOpt = None,
    deployment: DeploymentOpt = None,
    relayer_url: RelayerOpt = None,
    wallet: WalletOpt = None,
    keystore: KeystoreOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the job's state, participants and event history."""
    with _errors():
        req = _requester(rpc_url, deployment, relayer_url, wallet, keystore, password_file)
        try:
            st = req.status(job_id)
        finally:
            req.close()
    _emit(st.to_dict(), as_json, _status_lines(st))


@app.command("wait")
def wait_job(
    job_id: JobIdArg,
    until: Annotated[str, typer.Option("--until", help="result (default) or terminal.")] = "result",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 3_600,
    rpc_url: RpcOpt = None,
    deployment: DeploymentOpt = None,
    relayer_url: RelayerOpt = None,
    wallet: WalletOpt = None,
    keystore: KeystoreOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Wait until the job's result is available (or it is terminal)."""
    if until not in ("result", "terminal"):
        raise _fail(f"--until is 'result' or 'terminal', not {until!r}")
    goal: Literal["result", "terminal"] = "result" if until == "result" else "terminal"
    with _errors():
        req = _requester(rpc_url, deployment, relayer_url, wallet, keystore, password_file)
        try:
            st = _wait_with_progress(req, job_id, timeout, as_json, goal)
        finally:
            req.close()
    _emit(st.to_dict(), as_json, _status_lines(st))


def _result_lines(result: Any) -> list[str]:
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


@app.command("result")
def result(
    job_id: JobIdArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the outputs: a directory, a .safetensors file, or .npy (one output).",
        ),
    ] = None,
    rpc_url: RpcOpt = None,
    deployment: DeploymentOpt = None,
    relayer_url: RelayerOpt = None,
    wallet: WalletOpt = None,
    keystore: KeystoreOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download, decrypt and verify the job's result against the on-chain commitment."""
    with _errors():
        req = _requester(rpc_url, deployment, relayer_url, wallet, keystore, password_file)
        try:
            res = req.result(job_id, out)
        finally:
            req.close()
    _emit(res.to_dict(), as_json, _result_lines(res))
    if not res.ok:
        raise typer.Exit(1)


@app.command("challenge")
def challenge(
    job_id: JobIdArg,
    rpc_url: RpcOpt = None,
    deployment: DeploymentOpt = None,
    relayer_url: RelayerOpt = None,
    wallet: WalletOpt = None,
    keystore: KeystoreOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Challenge a committed job, posting the bond; verifiers re-run it."""
    with _errors():
        req = _requester(rpc_url, deployment, relayer_url, wallet, keystore, password_file)
        try:
            tx = req.challenge(job_id)
            state = req.status(job_id).state.name.lower()
        finally:
            req.close()
    _emit(
        {"job_id": job_id, "tx": tx, "state": state},
        as_json,
        [f"job {job_id} challenged ({tx}); now {state}"],
    )


@app.command("cancel")
def cancel(
    job_id: JobIdArg,
    rpc_url: RpcOpt = None,
    deployment: DeploymentOpt = None,
    relayer_url: RelayerOpt = None,
    wallet: WalletOpt = None,
    keystore: KeystoreOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel an open job; its escrow is credited back (`depin wallet withdraw`)."""
    with _errors():
        req = _requester(rpc_url, deployment, relayer_url, wallet, keystore, password_file)
        try:
            tx = req.cancel(job_id)
            credits = req.balances().credits
        finally:
            req.close()
    from marketplace.requester import format_tokens

    _emit(
        {"job_id": job_id, "tx": tx, "state": "expired", "credits": str(credits)},
        as_json,
        [f"job {job_id} cancelled ({tx}); credits now {format_tokens(credits)}"],
    )


@app.command("list")
def list_jobs(
    state: Annotated[str | None, typer.Option("--state", help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Most jobs shown.", min=1)] = 50,
    source: Annotated[
        str, typer.Option("--source", help="auto | relayer | chain (JobCreated logs).")
    ] = "auto",
    rpc_url: RpcOpt = None,
    deployment: DeploymentOpt = None,
    relayer_url: RelayerOpt = None,
    wallet: WalletOpt = None,
    keystore: KeystoreOpt = None,
    password_file: PasswordFileOpt = None,
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
            raise _fail(f"unknown state {state!r}; use one of {names}") from None
    if source not in ("auto", "relayer", "chain"):
        raise _fail(f"--source is auto, relayer or chain, not {source!r}")
    src: Literal["auto", "relayer", "chain"] = (
        "relayer" if source == "relayer" else "chain" if source == "chain" else "auto"
    )
    with _errors():
        req = _requester(rpc_url, deployment, relayer_url, wallet, keystore, password_file)
        try:
            jobs = req.list_jobs(state=wanted, limit=limit, source=src)
        finally:
            req.close()
    lines = [
        f"{j.job_id:>6}  {j.state.name.lower():<10} units {j.units} x{j.replicas}  "
        f"spec {j.spec_hash[:12]}"
        for j in jobs
    ] or ["no jobs"]
    _emit({"jobs": [j.to_dict() for j in jobs]}, as_json, lines)
