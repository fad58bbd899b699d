"""`depin devnet`: the whole marketplace on this machine with one command.

    depin devnet up [--providers 2] [--lazy M] [--copycat C] [--no-show K] [--detach]
    depin devnet status [--json]
    depin devnet restart NAME|all
    depin devnet env [--json]          exports that point `depin job`/`wallet`/`provider` here
    depin devnet warp DURATION         moves the chain clock forward (9d, 2h30m, 90s, 3600)
    depin devnet down [--clean]

`up` starts Anvil, Redis, the contracts, the relayer and the provider agents with their Celery
workers (see marketplace.devnet.manager); in the foreground it supervises them (a component that
stops is started again: at once, then with backoff up to 30 s) and Ctrl-C or SIGTERM stops them
all; with `--detach` they keep running, unsupervised, until `down`. On a devnet `down` stopped,
`up` resumes it (the chain from its state dump, the same keys and providers); on one that is up
with dead components, it starts those again. `restart` restarts one
component (anvil, redis, relayer, provider-N-agent, provider-N-worker) or all of them.
Devnet only: every key under `<dir>/keys` has the password "devnet".
"""

from __future__ import annotations

import re
import shlex
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
    block_time: Annotated[
        float | None,
        typer.Option(
            "--block-time",
            help="Seconds between blocks, as on a real chain (interval mining, no automine); "
            "default: a block per transaction plus one every second.",
        ),
    ] = None,
    confirmations: Annotated[
        int,
        typer.Option(
            "--confirmations",
            help="Blocks the relayer and the providers leave behind the head before acting on "
            "an event (reorg safety, as on a real chain).",
        ),
    ] = 0,
    directory: DirOpt = DEFAULT_DIR,
    detach: Annotated[
        bool, typer.Option("--detach", help="Return once healthy; stop later with `down`.")
    ] = False,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Replace a stopped devnet found in --dir. Without it, `up` resumes a devnet "
            "`down` stopped (same chain, keys and providers) or starts its dead components.",
        ),
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
        block_time=block_time,
        confirmations=confirmations,
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
        typer.echo(f"  dashboard   {state.api_url}/")
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


@app.command("env")
def env(
    directory: DirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Print `export` lines that point every `depin` command at this devnet.

    `eval "$(depin devnet env)"` sets the requester's chain, relayer and wallet (the devnet's
    funded requester), the settings a provider joining by hand needs besides its key (the
    broker, and the heartbeat interval the devnet's relayer expects), and the faucet's minter
    key. Devnet only: the values include the devnet's keys and keystore password."""
    from marketplace.devnet.manager import Devnet

    with errors():
        variables = devnet_environment(Devnet.attach(directory))
    emit(
        variables,
        as_json,
        [f"export {name}={shlex.quote(value)}" for name, value in variables.items()],
    )


def devnet_environment(devnet: Any) -> dict[str, str]:
    """The DEPIN_ variables of a client of `devnet` (a manager.Devnet)."""
    from marketplace.devnet.manager import HEARTBEAT_INTERVAL

    state = devnet.state
    if not state.rpc_url or not state.deployment_file:
        raise fail(f"the devnet in {state.dir} never finished starting; run `depin devnet up`")
    out: dict[str, str] = {}
    for prefix in ("DEPIN_REQUESTER_", "DEPIN_PROVIDER_"):
        out[prefix + "RPC_URL"] = state.rpc_url
        out[prefix + "DEPLOYMENT_FILE"] = state.deployment_file
        out[prefix + "RELAYER_URL"] = state.api_url
    if state.requester is not None:
        out["DEPIN_REQUESTER_KEYSTORE_FILE"] = state.requester.keystore
        out["DEPIN_REQUESTER_KEYSTORE_PASSWORD"] = state.keystore_password
    out["DEPIN_PROVIDER_BROKER_URL"] = state.redis_url
    out["DEPIN_PROVIDER_HEARTBEAT_INTERVAL"] = str(HEARTBEAT_INTERVAL)
    if state.deployer.get("key"):
        out["DEPIN_DEVNET_MINTER_KEY"] = state.deployer["key"]
    return out


_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+)([wdhms])")


def parse_duration(text: str) -> int:
    """Seconds in `text`: a plain number of seconds, or amounts with units w, d, h, m, s
    ("9d", "2h30m"). Raises ValueError naming the accepted forms."""
    cleaned = text.strip().lower()
    if cleaned.isdigit():
        seconds = int(cleaned)
    else:
        parts = _DURATION.findall(cleaned)
        if not parts or "".join(n + u for n, u in parts) != cleaned:
            raise ValueError(
                f"{text!r} is not a duration; give seconds (3600) or amounts with units w, d, "
                "h, m, s (9d, 2h30m)"
            )
        seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"the duration must be positive, got {text!r}")
    return seconds


@app.command("warp")
def warp(
    duration: Annotated[
        str, typer.Argument(help="How far to move the clock: 3600, 90s, 45m, 2h30m, 9d, 1w.")
    ],
    directory: DirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Move the devnet's chain clock forward and mine a block (Anvil's evm_increaseTime).

    For what takes days on a real chain: an unbonding period, a job's deadline. Every process
    of the devnet follows the chain's time, so deadlines that pass are handled as they would be
    (the relayer expires, the keeper settles)."""
    from web3 import Web3

    from marketplace.cli.wallet import DEVNET_CHAIN_ID
    from marketplace.devnet.manager import Devnet

    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise fail(str(exc)) from None
    with errors():
        devnet = Devnet.attach(directory)
        w3 = Web3(Web3.HTTPProvider(devnet.state.rpc_url, request_kwargs={"timeout": 10}))
        try:
            chain_id = w3.eth.chain_id
            if chain_id != DEVNET_CHAIN_ID:
                raise fail(f"{devnet.state.rpc_url} is chain {chain_id}, not a devnet")
            before = int(w3.eth.get_block("latest")["timestamp"])
            w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            block = w3.eth.get_block("latest")
        except (OSError, ValueError) as exc:
            raise fail(
                f"cannot reach the devnet's chain at {devnet.state.rpc_url} ({exc}); "
                "`depin devnet status` shows what runs"
            ) from None
    after = int(block["timestamp"])
    emit(
        {"seconds": seconds, "before": before, "after": after, "block": int(block["number"])},
        as_json,
        [
            f"chain time {before} -> {after} (+{after - before} s, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(after))}), "
            f"block {int(block['number'])}"
        ],
    )
