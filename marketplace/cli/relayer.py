"""`depin relayer`: run the relayer loop (and its HTTP API), or show what its database knows.

The loop (marketplace.relayer.service) and the API (marketplace.api) know nothing of each
other; `api_app` here gives the API the loop's store and liveness book.

Configuration comes from `DEPIN_RELAYER_*` variables (see marketplace.relayer.settings); the
options below override them.

Several `relayer run` processes may share one PostgreSQL database: one leads, the others stand
by serving the API and take over when it dies (marketplace.relayer.leader). With `--json` each
change prints a `{"leading": true|false}` line.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from marketplace.api.listen import listen
from marketplace.cli.common import (
    JsonOpt,
    deployment_option,
    emit,
    emit_event,
    errors,
    fail,
    rpc_url_option,
)
from marketplace.index.store import Store
from marketplace.protocol.errors import DepinError
from marketplace.relayer.settings import RelayerSettings, StoreSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from marketplace.relayer.service import Relayer

log = logging.getLogger(__name__)

app = typer.Typer(name="relayer", no_args_is_help=True, help="The matcher/keeper relayer.")

DbOpt = Annotated[str | None, typer.Option("--db-url", help="Database URL (DEPIN_RELAYER_DB_URL).")]


def api_app(relayer: Relayer) -> FastAPI:
    """The HTTP API of `relayer`, configured by its settings: heartbeats land in
    `relayer.liveness` (the book the matcher reads: by default in the relayer's database, so
    a standby reads what its leader's API recorded), checked against
    its deployment and its registered providers and judged live by the same window; jobs,
    providers and status come from its store. While the store is unavailable its endpoints
    answer 503 with Retry-After (the outage logged once); artifacts and heartbeats of known
    providers keep working."""
    from marketplace.api.app import create_app
    from marketplace.api.chain_routes import chain_router
    from marketplace.api.settings import ApiSettings
    from marketplace.api.store_providers import StoreProviders
    from marketplace.index.outages import safe_url
    from marketplace.protocol.outage import Outage

    settings = relayer.settings
    api_settings = ApiSettings(
        artifact_root=settings.artifact_root,
        artifacts_url=settings.artifacts_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
        s3_access_key=settings.s3_access_key,
        s3_secret_key=settings.s3_secret_key,
        chain_id=relayer.deployment.chain_id,
        market_address=relayer.deployment.market,
        heartbeat_interval=settings.heartbeat_interval,
        heartbeat_missed=settings.heartbeat_missed,
        host=settings.api_host,
        port=settings.api_port,
    )
    # The API's own view of the database: its requests fail and recover apart from the loop's.
    outage = Outage(
        f"relayer database {safe_url(relayer.store.url)} (API)",
        log,
        first_delay=settings.poll_interval,
        max_delay=settings.backoff_limit,
    )
    router = chain_router(
        relayer.store,
        relayer.liveness,
        heartbeat_interval=settings.heartbeat_interval,
        heartbeat_missed=settings.heartbeat_missed,
        outage=outage,
    )
    return create_app(
        api_settings,
        provider_source=StoreProviders(relayer.store, outage),
        liveness=relayer.liveness,
        routers=[router],
    )


@app.command("run")
def run(
    rpc_url: Annotated[str | None, rpc_url_option("DEPIN_RELAYER_")] = None,
    deployment_file: Annotated[Path | None, deployment_option("DEPIN_RELAYER_")] = None,
    db_url: DbOpt = None,
    confirmations: Annotated[
        int | None, typer.Option("--confirmations", help="Blocks behind the head to apply.")
    ] = None,
    api_host: Annotated[
        str | None, typer.Option("--api-host", help="API interface (DEPIN_RELAYER_API_HOST).")
    ] = None,
    api_port: Annotated[
        int | None, typer.Option("--api-port", help="API port (DEPIN_RELAYER_API_PORT).")
    ] = None,
    no_api: Annotated[
        bool, typer.Option("--no-api", help="Run only the loop, without the HTTP API.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Follow the chain, assign open jobs, run the keeper and serve the HTTP API (artifacts,
    heartbeats, jobs, metrics) until Ctrl-C or SIGTERM."""
    from marketplace.index.outages import database_unavailable, reason, safe_url
    from marketplace.relayer.service import Relayer  # web3 import kept off `--help`

    def on_lead(leading: bool) -> None:
        state = "leads" if leading else "stands by (another relayer leads)"
        emit_event({"leading": leading}, as_json, f"relayer {state}")

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "rpc_url": rpc_url,
            "deployment_file": deployment_file,
            "db_url": db_url,
            "confirmations": confirmations,
            "api_host": api_host,
            "api_port": api_port,
        }.items()
        if v is not None
    }
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with errors():
        settings = RelayerSettings(**overrides)
        try:
            relayer = Relayer(settings, on_lead=on_lead)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            raise fail(
                f"cannot open the relayer database {safe_url(settings.db_url)} ({reason(exc)}); "
                "check DEPIN_RELAYER_DB_URL and that the database is up and writable"
            ) from None

    server: Any = None
    sock: socket.socket | None = None
    if not no_api:
        import uvicorn

        try:
            sock = listen(settings.api_host, settings.api_port)
            api = api_app(relayer)
        except (OSError, DepinError, ValidationError) as exc:
            relayer.close()
            if sock is not None:
                sock.close()
            where = f"{settings.api_host}:{settings.api_port}"
            raise fail(f"cannot serve the API on {where}: {exc}") from None
        server = uvicorn.Server(uvicorn.Config(api, log_level="warning", access_log=False))
    elif settings.require_heartbeats:
        logging.getLogger(__name__).warning(
            "--no-api with require_heartbeats: providers are matched only on heartbeats "
            "another relayer on this database records; set DEPIN_RELAYER_REQUIRE_HEARTBEATS="
            "false otherwise"
        )

    stop = threading.Event()
    failures: list[BaseException] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    def loop() -> None:
        try:
            relayer.run(stop)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
            stop.set()

    def serve() -> None:
        assert server is not None and sock is not None
        try:
            server.run(sockets=[sock])
        except BaseException as exc:
            failures.append(exc)
        finally:
            stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started: dict[str, Any] = {
        "market": relayer.deployment.market,
        "chain_id": relayer.deployment.chain_id,
        "matcher": relayer.submitter.signer.address,
        "db_url": relayer.store.url,
        "require_heartbeats": settings.require_heartbeats,
        # PostgreSQL: relayers on one database take turns leading; SQLite: this one runs alone.
        "standby": relayer.leadership.shared,
    }
    if sock is not None:
        host, port = sock.getsockname()[:2]
        started["api"] = f"http://{host}:{port}"
    emit_event({"started": started}, as_json, f"relayer started: {started}")
    threads = [threading.Thread(target=loop, name="relayer-loop", daemon=True)]
    if server is not None:
        threads.append(threading.Thread(target=serve, name="relayer-api", daemon=True))
    try:
        for t in threads:
            t.start()
        while not stop.wait(0.5):
            pass
    finally:
        stop.set()
        if server is not None:
            server.should_exit = True
        for t in threads:
            t.join(timeout=15)
        for s, handler in previous.items():
            signal.signal(s, handler)
        if sock is not None:
            sock.close()
        relayer.close()
    for error in failures:
        if isinstance(error, DepinError):
            raise fail(str(error))
        if not (isinstance(error, SystemExit) and not error.code):
            raise fail(f"relayer failed: {type(error).__name__}: {error}")
    emit_event({"stopped": True}, as_json, "relayer stopped")


def status_data(store: Store) -> dict[str, Any]:
    """Checkpoints, job counts by state and provider summary of the relayer database."""
    overview = store.overview()
    position = overview.position
    checkpoints = (
        [{"chain_id": position.chain_id, "market": position.market, "block": position.block_number}]
        if position is not None
        else []
    )
    counts = {state.name.lower(): n for state, n in overview.jobs_by_state.items()}
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
    with errors():
        settings = StoreSettings(db_url=db_url) if db_url else StoreSettings()
        path = settings.sqlite_path()
        if path is not None and not path.exists():
            raise fail(f"no relayer database at {path}; run `depin relayer run` or pass --db-url")
        store = Store(settings.db_url)
    try:
        data = status_data(store)
    finally:
        store.close()
    emit(data, as_json, _status_lines(data))


def _status_lines(data: dict[str, Any]) -> list[str]:
    lines = [
        f"chain {c['chain_id']} market {c['market']}: checkpoint block {c['block']}"
        for c in data["checkpoints"]
    ] or ["not synced yet"]
    jobs = ", ".join(f"{k} {v}" for k, v in sorted(data["jobs"].items())) or "none"
    lines.append(f"jobs: {jobs}")
    lines.append(f"providers: {len(data['providers'])} registered")
    for p in data["providers"]:
        lines.append(
            f"  {p['address']} price {p['price_per_unit']} vram {p['vram_gib']} GiB "
            f"free stake {p['free_stake']} done {p['jobs_done']} slashed {p['jobs_slashed']}"
        )
    return lines
