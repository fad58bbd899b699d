"""`depin market`: who is live, what they ask, and a dry-run quote of a job (its escrow and
whether anyone can take it now), before paying anything. Needs no key: the chain for the
market's parameters, the relayer for the providers (DEPIN_REQUESTER_* or the options)."""

from __future__ import annotations

from typing import Annotated

import typer

from marketplace.cli.common import (
    JsonOpt,
    emit,
    errors,
    fail,
)
from marketplace.cli.job import ChainOptions, RelayerOpt
from marketplace.protocol.tokens import UINT80_MAX, format_tokens, parse_tokens


def market(
    units: Annotated[int, typer.Option("--units", help="Units of the job to quote.", min=1)] = 1,
    replicas: Annotated[int, typer.Option("--replicas", help="Providers that run it.")] = 1,
    max_price: Annotated[
        str, typer.Option("--max-price", help="Most paid per unit, in tokens.")
    ] = "0.001",
    profile: Annotated[
        str | None, typer.Option("--profile", help="Determinism profile (default: CPU).")
    ] = None,
    min_vram: Annotated[int, typer.Option("--min-vram", help="GiB of GPU memory needed.")] = 0,
    exec_window: Annotated[
        int, typer.Option("--exec-window", help="Seconds a provider has to commit.")
    ] = 3_600,
    rpc_url: Annotated[str | None, typer.Option("--rpc-url", help="JSON-RPC URL.")] = None,
    deployment: Annotated[str | None, typer.Option("--deployment", help="Deployment file.")] = None,
    relayer_url: RelayerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show live providers and their asks per profile, and quote a job: what it would lock in
    escrow and whether live providers can take it now (or what to change so they can)."""
    from pathlib import Path

    from marketplace.protocol.client import Market
    from marketplace.protocol.deployment import Deployment, connect_deployment
    from marketplace.requester import DEFAULT_PROFILE
    from marketplace.requester.market import fetch_providers, market_view, quote

    chain = ChainOptions(rpc_url=rpc_url, deployment=Path(deployment) if deployment else None)
    with errors():
        price = parse_tokens(max_price, what="--max-price", maximum=UINT80_MAX)
        settings = chain.settings(relayer_url=relayer_url)
        dep = Deployment.load(settings.deployment_file)
        name = profile or DEFAULT_PROFILE
        if name not in dep.profiles:
            raise fail(f"the market defines no profile {name!r}; use one of {dep.profiles}")
        params = Market(connect_deployment(settings.rpc_url, dep), dep).params()
        rows = fetch_providers(settings.relayer_url)
        view = market_view(rows, dep.profiles)
        q = quote(
            rows,
            params,
            profile=dep.profiles.index(name),
            units=units,
            replicas=replicas,
            max_price_per_unit=price,
            min_vram_gib=min_vram,
            exec_window=exec_window,
        )
    lines = [f"providers: {view.registered} registered, {view.live} live"]
    for a in view.by_profile:
        lines.append(
            f"  {a.profile}: {a.live} live, asks {format_tokens(a.lowest)} / "
            f"{format_tokens(a.median)} / {format_tokens(a.highest)} tokens per unit "
            "(lowest / median / highest)"
        )
    lines.append(
        f"quote: {units} units x {replicas} replicas at up to {format_tokens(price)} tokens per "
        f"unit on {name}: escrow {format_tokens(q.escrow)} tokens (the unspent rest comes back)"
    )
    lines.append(("  takeable now: " if q.takeable else "  not takeable now: ") + q.waiting.reason)
    emit(
        {"market": view.model_dump(mode="json"), "quote": q.model_dump(mode="json")}, as_json, lines
    )
