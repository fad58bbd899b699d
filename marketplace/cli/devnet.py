"""`depin devnet`: the whole marketplace on this machine with one command.

    depin devnet up [--providers 2] [--lazy M] [--copycat C] [--no-show K] [--detach]
    depin devnet status [--json]
    depin devnet down [--clean]

`up` starts Anvil, Redis, the contracts, the relayer and the provider agents with their Celery
workers (see marketplace.devnet.manager); in the foreground Ctrl-C or SIGTERM stops them all,
with `--detach` they keep running until `down`. Devnet only: every key under `<dir>/keys` has
the password "devnet".
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from marketplace.cli.common import JsonOpt, emit, errors, fail
from marketplace.protocol.errors import DepinError

app = typer.Typer(name="devnet", no_args_is_help=True, help="A local devnet in one command.")

DirOpt = Annotated[
    Path, typer.Option("--dir", help="Directory of the devnet's state, chain, keys and logs.")
]
DEFAULT_DIR = Path(".devnet")


class _Stop(BaseException):
    """Raised by the SIGTERM handler so `up` unwinds (and stops its children) like on Ctrl-C."""


@app.command("up")
def up(
    providers: Annotated[int, typer.Option("--providers", help="Provider agents.")] = 2,
    lazy: Annotated[int, typer.Option("--lazy", help="Of which lazy (first M).")] = 0,
    copycat: Annotated[int, typer.Option("--copycat", help="Of which copycats (next C).")] = 0,
    no_show: Annotated[int, typer.Option("--no-show", help="Of which no-shows (next K).")] = 0,
    workers_per_provider: Annotated[
        int, typer.Option("--workers-per-provider", help="Jobs a provider's worker runs at once.")
    ] = 1,
    audit_rate: Annotated[
        int,
        typer.Option(
            "--audit-rate",
            help="Share of single-replica jobs audited by drawn verifiers, in basis points; at "
            "least 910 (the contract's floor at collateral multiple 10).",
        ),
    ] = 3_000,
    directory: DirOpt = DEFAULT_DIR,
    detach: Annotated[
        bool, typer.Option("--detach", help="Return once healthy; stop later with `down`.")
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Replace a stopped devnet found in --dir.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds each step may take to become healthy.")
    ] = 60.0,
) -> None:
    """Start Anvil, Redis, the contracts, the relayer and N providers.

    Writes <dir>/state.json; without --detach, Ctrl-C or SIGTERM stops everything."""
    from marketplace.devnet.manager import Devnet, DevnetConfig, DevnetError

    config = DevnetConfig(
        dir=directory,
        providers=providers,
        lazy=lazy,
        copycat=copycat,
        no_show=no_show,
        workers_per_provider=workers_per_provider,
        audit_bps=audit_rate,
        fresh=fresh,
        timeout=timeout,
    )

    def on_term(signum: int, _frame: FrameType | None) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        try:
            devnet = Devnet.up(config, progress=typer.echo)
        except DevnetError as exc:
            raise fail(f"devnet up failed at step {exc.step or '?'}: {exc}") from None
        except DepinError as exc:
            raise fail(str(exc)) from None
        except (_Stop, KeyboardInterrupt):
            typer.echo("interrupted; everything started was stopped", err=True)
            raise typer.Exit(130) from None
        state = devnet.state
        typer.echo(f"devnet up in {devnet.dir}; state in {devnet.dir / 'state.json'}")
        typer.echo(f"  rpc         {state.rpc_url}")
        typer.echo(f"  deployment  {state.deployment_file}")
        typer.echo(f"  relayer API {state.api_url}")
        typer.echo(f"  keys        {devnet.dir / 'keys'} (password {state.keystore_password!r})")
        typer.echo(f"  logs        {devnet.dir / 'logs'}")
        if detach:
            typer.echo(f"detached; stop with `depin devnet down --dir {directory}`")
            return
        typer.echo("running; Ctrl-C stops everything")
        reported: set[int] = set()
        try:
            while True:
                for record, code in devnet.exited():
                    if record.pid not in reported:
                        reported.add(record.pid)
                        typer.echo(
                            f"warning: {record.name} exited with code {code}; see {record.log}",
                            err=True,
                        )
                time.sleep(0.5)
        except (_Stop, KeyboardInterrupt):
            typer.echo("stopping")
        with errors():
            devnet.down()
        typer.echo("devnet stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command("status")
def status(
    directory: DirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Show the processes, chain head, relayer and live providers.

    Exits 1 when anything is down."""
    from marketplace.devnet.manager import Devnet

    with errors():
        data = Devnet.attach(directory).status()
    emit(data, as_json, _status_lines(data))
    if not data["healthy"]:
        raise typer.Exit(1)


def _status_lines(data: dict[str, Any]) -> list[str]:
    health = "healthy" if data["healthy"] else "NOT healthy"
    lines = [f"devnet {data['dir']}: {data['phase']}, {health}"]
    chain = data["chain"]
    head = chain["head"] if chain["head"] is not None else f"unreachable ({chain.get('error')})"
    lines.append(f"  chain    {chain['rpc_url']} head {head}")
    if data["deployment"]:
        lines.append(f"  market   {data['deployment']['market']}")
    relayer = data["relayer"]
    if relayer["healthz"] is not None:
        jobs = (relayer["status"] or {}).get("jobs", "?")
        lines.append(f"  relayer  {relayer['api_url']} ok, {jobs} jobs")
    else:
        lines.append(f"  relayer  {relayer['api_url']} unreachable ({relayer.get('error')})")
    for p in data["processes"]:
        lines.append(f"  {p['name']:<20} pid {p['pid']:<8} {'running' if p['alive'] else 'EXITED'}")
    for p in data["providers"]:
        live = "live" if p["live"] else "silent"
        lines.append(f"  {p['name']:<20} {p['address']} {p['behavior']:<8} {live}")
    if data["requester"]:
        lines.append(
            f"  requester {data['requester']['address']} ({data['requester']['keystore']})"
        )
    return lines


@app.command("down")
def down(
    directory: DirOpt = DEFAULT_DIR,
    clean: Annotated[
        bool, typer.Option("--clean", help="Also delete the directory (chain, keys, logs).")
    ] = False,
) -> None:
    """Stop every process of the devnet; keep its chain and logs.

    SIGTERM to each process group, last started first, then SIGKILL after 10 s. Nothing to
    stop is not an error."""
    from marketplace.devnet.manager import Devnet
    from marketplace.devnet.state import STATE_FILE

    if not (directory / STATE_FILE).exists():
        typer.echo(f"no devnet in {directory}; nothing to stop")
        return
    with errors():
        devnet = Devnet.attach(directory)
        running = len(devnet.state.processes)
        devnet.down(clean=clean)
    typer.echo(
        f"stopped {running} processes" + (f"; deleted {directory}" if clean else "")
        if running
        else "nothing running" + (f"; deleted {directory}" if clean else "")
    )
