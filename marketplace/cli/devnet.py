"""`depin devnet`: the whole marketplace on this machine with one command.

    depin devnet up [--providers 2] [--lazy M] [--copycat C] [--no-show K] [--detach]
    depin devnet status [--json]
    depin devnet restart NAME|all
    depin devnet down [--clean]

`up` starts Anvil, Redis, the contracts, the relayer and the provider agents with their Celery
workers (see marketplace.devnet.manager); in the foreground it supervises them (a component that
stops is started again: at once, then with backoff up to 30 s) and Ctrl-C or SIGTERM stops them
all; with `--detach` they keep running, unsupervised, until `down`. `restart` restarts one
component (anvil, redis, relayer, provider-N-agent, provider-N-worker) or all of them.
Devnet only: every key under `<dir>/keys` has the password "devnet".
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
        typer.echo("running and supervised (a stopped component is restarted); Ctrl-C stops")
        try:
            while True:
                try:
                    restarts = devnet.supervise_once()
                except DepinError as exc:  # e.g. `down` from another shell: nothing to do
                    typer.echo(f"warning: supervision: {exc}", err=True)
                    restarts = []
                for restart in restarts:
                    typer.echo(f"warning: {restart.line()}", err=True)
                if devnet.state.phase != "up":
                    typer.echo(f"devnet is {devnet.state.phase} (stopped elsewhere)")
                    break
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
        state = "running" if p["alive"] else "EXITED"
        restarts = p.get("restarts", 0)
        if restarts:
            last = p.get("last_exit")
            state += f", {restarts} restarts" + (
                f" (last exit code {last})" if last is not None else ""
            )
        lines.append(f"  {p['name']:<20} pid {p['pid']:<8} {state}")
    for p in data["providers"]:
        live = "live" if p["live"] else "silent"
        lines.append(f"  {p['name']:<20} {p['address']} {p['behavior']:<8} {live}")
    if data["requester"]:
        lines.append(
            f"  requester {data['requester']['address']} ({data['requester']['keystore']})"
        )
    return lines


@app.command("restart")
def restart(
    name: Annotated[
        str,
        typer.Argument(
            help="Component: anvil, redis, relayer, provider-N-agent, provider-N-worker, or all."
        ),
    ],
    directory: DirOpt = DEFAULT_DIR,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait until it answers again.")
    ] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Restart one component of a running devnet (detached or in the foreground).

    Stops it if it still runs (SIGTERM, then SIGKILL after 10 s), starts it with the same
    command and settings, records the new pid in state.json and waits until it answers. Anvil
    comes back on the same port from anvil-state.json (a crashed one as of its last dump)."""
    from marketplace.devnet.manager import Devnet

    with errors():
        devnet = Devnet.attach(directory)
        names = devnet.components() if name == "all" else [name]
        records = [devnet.restart(n, timeout=timeout) for n in names]
    data = [{"name": r.name, "pid": r.pid, "restarts": r.restarts, "log": r.log} for r in records]
    emit(
        {"restarted": data},
        as_json,
        [
            f"restarted {d['name']}: pid {d['pid']} (restart {d['restarts']}); log {d['log']}"
            for d in data
        ],
    )


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
