"""Providers as the relayer's index holds them (chain reads, see marketplace.api.chain_routes).

    GET /providers            registered providers by address
    GET /providers/{address}  one provider (registered or not, as long as an event named it);
                              400 malformed address, 404 unknown

Token amounts and the 256-bit profile mask are decimal strings; addresses are checksummed.
``credited`` is the sum of the market's ``Credited`` events to the address (payments, refunds,
bonds returned), what it could withdraw had it never withdrawn. Liveness (``last_heartbeat``,
``live``) comes from the heartbeat book when one is given, else it is null.
"""

from __future__ import annotations

from eth_utils.address import is_checksum_address, is_hex_address, to_checksum_address
from fastapi import APIRouter, Depends
from pydantic import BaseModel

from marketplace.api.database import database_guard
from marketplace.api.dependencies import ChainReads, Reads
from marketplace.api.errors import BadRequest, NotFound
from marketplace.index.store import ProviderRow

__all__ = ["ProfileOut", "ProviderOut", "checked_address", "router"]

router = APIRouter(dependencies=[Depends(database_guard)])


class ProfileOut(BaseModel):
    id: int
    descriptor: str | None


class ProviderOut(BaseModel):
    address: str
    registered: bool
    stake: str
    locked: str
    #: stake - locked - unbonding (never below 0): what new jobs can lock.
    free_stake: str
    unbonding: str
    unbond_at: int
    price_per_unit: str
    vram_gib: int
    gpu_model: str
    endpoint: str
    #: The provider's own floor on a job's exec window and cap on its units (its terms).
    min_exec_window: int
    max_units: int
    profile_mask: str
    profiles: list[ProfileOut]
    jobs_done: int
    jobs_slashed: int
    #: Sum of the market's Credited events to this address.
    credited: str
    registered_block: int | None
    last_block: int | None
    #: Unix time of the last heartbeat in the liveness book; null without a book or heartbeat.
    last_heartbeat: int | None
    #: Whether that heartbeat is recent enough; null without a book.
    live: bool | None


def checked_address(value: str, what: str) -> str:
    """`value` checksummed; BadRequest unless it is an address (a mixed-case one must carry a
    valid EIP-55 checksum)."""
    body = value[2:]
    mixed = body != body.lower() and body != body.upper()
    if not is_hex_address(value) or (mixed and not is_checksum_address(value)):
        raise BadRequest(
            f"{what} {value!r} is not an address; give 0x and 40 hex digits "
            "(all lower case, or with a valid EIP-55 checksum)"
        )
    return to_checksum_address(value)


@router.get("/providers", response_model=list[ProviderOut])
def list_providers(reads: Reads) -> list[ProviderOut]:
    store = reads.store
    profiles, credits, now = store.profiles(), store.credited_totals(), int(reads.clock())
    return [_provider_out(r, profiles, credits, now, reads) for r in store.providers()]


@router.get("/providers/{address}", response_model=ProviderOut)
def get_provider(address: str, reads: Reads) -> ProviderOut:
    checked = checked_address(address, "provider")
    store = reads.store
    row = store.provider(checked)
    if row is None:
        raise NotFound(
            f"no provider {checked} in the relayer's index; register it "
            "(`depin provider register`) and wait for the listener to reach the event"
        )
    return _provider_out(
        row, store.profiles(), store.credited_totals(checked), int(reads.clock()), reads
    )


def _provider_out(
    row: ProviderRow, profiles: dict[int, str], credits: dict[str, int], now: int, reads: ChainReads
) -> ProviderOut:
    last: int | None = None
    if reads.liveness is not None:
        hb = reads.liveness.last(row.address)
        last = hb.timestamp if hb is not None else None
    mask = row.profile_mask
    return ProviderOut(
        address=row.address,
        registered=row.registered,
        stake=str(row.stake),
        locked=str(row.locked),
        free_stake=str(row.free_stake),
        unbonding=str(row.unbonding),
        unbond_at=row.unbond_at,
        price_per_unit=str(row.price_per_unit),
        vram_gib=row.vram_gib,
        gpu_model=row.gpu_model,
        endpoint=row.endpoint,
        min_exec_window=row.min_exec_window,
        max_units=row.max_units,
        profile_mask=str(mask),
        profiles=[
            ProfileOut(id=i, descriptor=profiles.get(i))
            for i in range(mask.bit_length())
            if mask >> i & 1
        ],
        jobs_done=row.jobs_done,
        jobs_slashed=row.jobs_slashed,
        credited=str(credits.get(row.address, 0)),
        registered_block=row.registered_block,
        last_block=row.last_block,
        last_heartbeat=last,
        live=reads.is_live(row.address, now),
    )
