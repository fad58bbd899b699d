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

import json
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from marketplace.protocol.errors import DepinError

app = typer.Typer(name="devnet", no_args_is_help=True, help="A local devnet in one command.")

DirOpt = Annotated[
    Path, typer.Option("--dir", help="Directory of the devnet's state, chain, keys and logs.")
]
DEFAULT_DIR = Path(".devnet")


class _Stop(BaseException):
    """Raised by the SIGTERM handler so `up` unwinds (and stops its children) like on Ctrl-C."""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


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
        int, typer.Option("--audit-rate", help="Share of jobs audited, in basis points.")
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
            raise _fail(f"devnet up failed at step {exc.step or '?'}: {exc}") from None
        except DepinError as exc:
            raise _fail(str(exc)) from None
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
        try:
            devnet.down()
        except DepinError as exc:
            raise _fail(str(exc)) from None
        typer.echo("devnet stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command("status")
def status(
    directory: DirOpt = DEFAULT_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show the processes, chain head, relayer and live providers.

    Exits 1 when anything is down."""
    from marketplace.devnet.manager import Devnet

    try:
        data = Devnet.attach(directory).status()
    except DepinError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        _print_status(data)
    if not data["healthy"]:
        raise typer.Exit(1)


def _print_status(data: dict[str, Any]) -> None:
    typer.echo(
        f"devnet {data['dir']}: {data['phase']}, {'healthy' if data['healthy'] else 'NOT healthy'}"
    )
    chain = data["chain"]
    head = chain["head"] if chain["head"] is not None else f"unreachable ({chain.get('error')})"
    typer.echo(f"  chain    {chain['rpc_url']} head {head}")
    if data["deployment"]:
        typer.echo(f"  market   {data['deployment']['market']}")
    relayer = data["relayer"]
    if relayer["healthz"] is not None:
        jobs = (relayer["status"] or {}).get("jobs", "?")
        typer.echo(f"  relayer  {relayer['api_url']} ok, {jobs} jobs")
    else:
        typer.echo(f"  relayer  {relayer['api_url']} unreachable ({relayer.get('error')})")
    for p in data["processes"]:
        typer.echo(f"  {p['name']:<20} pid {p['pid']:<8} {'running' if p['alive'] else 'EXITED'}")
    for p in data["providers"]:
        live = "live" if p["live"] else "silent"
        typer.echo(f"  {p['name']:<20} {p['address']} {p['behavior']:<8} {live}")
    if data["requester"]:
        typer.echo(f"  requester {data['requester']['address']} ({data['requester']['keystore']})")


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
    try:
        devnet = Devnet.attach(directory)
        running = len(devnet.state.processes)
        devnet.down(clean=clean)
    except DepinError as exc:
        raise _fail(str(exc)) from None
    typer.echo(
        f"stopped {running} processes" + (f"; deleted {directory}" if clean else "")
        if running
        else "nothing running" + (f"; deleted {directory}" if clean else "")
    )
