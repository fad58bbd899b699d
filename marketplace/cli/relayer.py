"""`depin relayer`: run the relayer loop, or show what its database knows.

Configuration comes from `DEPIN_RELAYER_*` variables (see marketplace.relayer.settings); the
options below override them.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from sqlalchemy import func, select

from marketplace.protocol.client import JobState
from marketplace.protocol.errors import DepinError
from marketplace.relayer.settings import RelayerSettings, StoreSettings
from marketplace.relayer.store import Checkpoint, JobRow, Store

app = typer.Typer(name="relayer", no_args_is_help=True, help="The matcher/keeper relayer.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DbOpt = Annotated[str | None, typer.Option("--db-url", help="Database URL (DEPIN_RELAYER_DB_URL).")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        (f"{'.'.join(str(p) for p in e['loc'])}: " if e["loc"] else "") + e["msg"]
        for e in exc.errors()
    )


@app.command("run")
def run(
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", help="JSON-RPC URL (DEPIN_RELAYER_RPC_URL).")
    ] = None,
    deployment_file: Annotated[
        Path | None,
        typer.Option("--deployment", help="Deployment file (DEPIN_RELAYER_DEPLOYMENT_FILE)."),
    ] = None,
    db_url: DbOpt = None,
    confirmations: Annotated[
        int | None, typer.Option("--confirmations", help="Blocks behind the head to apply.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Follow the chain, assign open jobs and run the keeper until Ctrl-C."""
    from marketplace.relayer.service import Relayer  # web3 import kept off `--help`

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "rpc_url": rpc_url,
            "deployment_file": deployment_file,
            "db_url": db_url,
            "confirmations": confirmations,
        }.items()
        if v is not None
    }
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = RelayerSettings(**overrides)
        relayer = Relayer(settings)
    except ValidationError as exc:
        raise _fail(_validation_message(exc)) from None
    except DepinError as exc:
        raise _fail(str(exc)) from None

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started = {
        "market": relayer.deployment.market,
        "chain_id": relayer.deployment.chain_id,
        "matcher": relayer.submitter.signer.address,
        "db_url": relayer.store.url,
    }
    typer.echo(json.dumps({"started": started}) if as_json else f"relayer started: {started}")
    try:
        relayer.run(stop)
    except DepinError as exc:
        raise _fail(str(exc)) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        relayer.close()
    typer.echo(json.dumps({"stopped": True}) if as_json else "relayer stopped")


def status_data(store: Store) -> dict[str, Any]:
    """Checkpoints, job counts by state and provider summary of the relayer database."""
    with store.session() as s:
        checkpoints = [
            {"chain_id": c.chain_id, "market": c.market_address, "block": c.block_number}
            for c in s.scalars(select(Checkpoint))
        ]
        counts = {
            JobState(state).name.lower(): int(n)
            for state, n in s.execute(select(JobRow.state, func.count()).group_by(JobRow.state))
        }
    providers = [
        {
            "address": p.address,
            "price_per_unit": str(p.price_per_unit),
            "vram_gib": p.vram_gib,
            "profile_mask": p.profile_mask,
            "stake": str(p.stake),
            "free_stake": str(p.free_stake),
            "unbonding": p.unbond_at != 0,
            "jobs_done": p.jobs_done,
            "jobs_slashed": p.jobs_slashed,
            "last_heartbeat": p.last_heartbeat,
        }
        for p in store.providers()
    ]
    return {"checkpoints": checkpoints, "jobs": counts, "providers": providers}


@app.command("status")
def status(db_url: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Show the listener checkpoint, jobs by state and registered providers."""
    try:
        settings = StoreSettings(db_url=db_url) if db_url else StoreSettings()
        path = settings.sqlite_path()
        if path is not None and not path.exists():
            raise _fail(f"no relayer database at {path}; run `depin relayer run` or pass --db-url")
        store = Store(settings.db_url)
    except ValidationError as exc:
        raise _fail(_validation_message(exc)) from None
    except DepinError as exc:
        raise _fail(str(exc)) from None
    try:
        data = status_data(store)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for c in data["checkpoints"]:
        typer.echo(f"chain {c['chain_id']} market {c['market']}: checkpoint block {c['block']}")
    if not data["checkpoints"]:
        typer.echo("not synced yet")
    jobs = ", ".join(f"{k} {v}" for k, v in sorted(data["jobs"].items())) or "none"
    typer.echo(f"jobs: {jobs}")
    typer.echo(f"providers: {len(data['providers'])} registered")
    for p in data["providers"]:
        typer.echo(
            f"  {p['address']} price {p['price_per_unit']} vram {p['vram_gib']} GiB "
            f"free stake {p['free_stake']} done {p['jobs_done']} slashed {p['jobs_slashed']}"
        )
