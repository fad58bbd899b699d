"""The market as a requester sees it before paying: who is live, what they ask, and what a job
would cost and whether anyone can take it now (`depin market`).

Read-only: the market's parameters from the chain, the providers from the relayer's index
(GET /providers, with their liveness), and the same eligibility walk the relayer uses to say
why an open job waits (`marketplace.matching.why`). No key is needed.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ConfigDict, Field, computed_field

from marketplace.matching.matcher import UNLIMITED_UNITS, OpenJob, ProviderView
from marketplace.matching.why import Waiting, explain
from marketplace.protocol.deployment import MarketParams
from marketplace.protocol.relayer_http import RelayerClient
from marketplace.requester.wire import TokenAmount, WireModel

__all__ = ["Asks", "MarketView", "Quote", "fetch_providers", "market_view", "quote"]


class Asks(WireModel):
    """Live providers of one profile and their asks per unit (base units)."""

    profile: str
    live: int
    lowest: TokenAmount
    median: TokenAmount
    highest: TokenAmount


class MarketView(WireModel):
    """Providers registered, those live, and the live ones' asks per profile."""

    model_config = ConfigDict(frozen=True, extra="forbid", serialize_by_alias=True)

    registered: int
    live: int
    by_profile: tuple[Asks, ...] = Field(serialization_alias="profiles")


class Quote(WireModel):
    """What a job would lock in escrow (the most it can cost; the rest comes back) and whether
    providers can take it now."""

    escrow: TokenAmount
    units: int
    replicas: int
    max_price_per_unit: TokenAmount
    #: Its JSON form is flattened into the quote: takeable, code, reason, eligible.
    waiting: Waiting = Field(exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def takeable(self) -> bool:
        return self.waiting.code == "matchable"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def code(self) -> str:
        return self.waiting.code

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reason(self) -> str:
        return self.waiting.reason

    @computed_field  # type: ignore[prop-decorator]
    @property
    def eligible(self) -> int:
        return self.waiting.eligible


def fetch_providers(relayer_url: str) -> list[Mapping[str, Any]]:
    """GET /providers of the relayer; RelayerUnreachable when it does not answer,
    RelayerRefused when it answers with an error."""
    with RelayerClient(relayer_url, timeout=10, url_setting="DEPIN_REQUESTER_RELAYER_URL") as r:
        rows = r.get_json("/providers", what="the provider list (GET /providers)")
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def _views(rows: Sequence[Mapping[str, Any]]) -> list[ProviderView]:
    return [
        ProviderView(
            address=str(r["address"]),
            profile_mask=int(r["profile_mask"]),
            vram_gib=int(r["vram_gib"]),
            price_per_unit=int(r["price_per_unit"]),
            free_stake=int(r["free_stake"]),
            unbonding=int(r["unbond_at"]) != 0,
            registered=bool(r["registered"]),
            # A relayer without a liveness book (null) cannot tell: count the provider.
            live=r.get("live") is not False,
            min_exec_window=int(r.get("min_exec_window", 0)),
            max_units=int(r.get("max_units", UNLIMITED_UNITS)),
        )
        for r in rows
    ]


def market_view(rows: Sequence[Mapping[str, Any]], profiles: Sequence[str]) -> MarketView:
    """Live providers and their asks per profile the deployment defines."""
    views = _views(rows)
    live = [v for v in views if v.registered and not v.unbonding and v.live]
    per: list[Asks] = []
    for i, name in enumerate(profiles):
        asks = sorted(v.price_per_unit for v in live if v.profile_mask >> i & 1)
        if asks:
            per.append(
                Asks(
                    profile=name,
                    live=len(asks),
                    lowest=asks[0],
                    median=int(statistics.median_low(asks)),
                    highest=asks[-1],
                )
            )
    return MarketView(
        registered=sum(1 for v in views if v.registered), live=len(live), by_profile=tuple(per)
    )


def quote(
    rows: Sequence[Mapping[str, Any]],
    params: MarketParams,
    *,
    profile: int,
    units: int,
    replicas: int,
    max_price_per_unit: int,
    min_vram_gib: int = 0,
    exec_window: int = 3_600,
    requester: str = "",
) -> Quote:
    """The escrow of such a job at these parameters and whether live providers can take it."""
    job = OpenJob(
        job_id=0,
        profile=profile,
        units=units,
        max_price_per_unit=max_price_per_unit,
        replicas=replicas,
        min_vram_gib=min_vram_gib,
        collateral_multiple=params.collateral_multiple,
        exec_window=exec_window,
        requester=requester,
    )
    return Quote(
        escrow=params.escrow(replicas, units, max_price_per_unit),
        units=units,
        replicas=replicas,
        max_price_per_unit=max_price_per_unit,
        waiting=explain(job, _views(rows)),
    )
