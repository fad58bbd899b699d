"""The devnet's books: every balance the market moves, read at one moment (`read_books`), and
token conservation between two such readings (`conservation`). `make demo` and `make chaos`
close their runs with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from marketplace.protocol.client import Market

__all__ = ["Books", "Conservation", "Holding", "conservation", "read_books"]


@dataclass(frozen=True)
class Holding:
    """What one address holds: tokens in its wallet, credits in the market, stake in the
    registry, and the registry's job counters (zero for a non-provider)."""

    wallet: int
    credits: int
    stake: int
    jobs_done: int = 0
    jobs_slashed: int = 0

    @property
    def total(self) -> int:
        return self.wallet + self.credits + self.stake


@dataclass(frozen=True)
class Books:
    """Every balance the market moves, read at one moment."""

    holdings: dict[str, Holding]
    audit_pool: int
    protocol_fees: int
    bonds: int
    supply: int
    market_balance: int
    registry_balance: int
    total_staked: int

    @property
    def pools(self) -> int:
        return self.audit_pool + self.protocol_fees + self.bonds

    def unaccounted(self) -> int:
        """Tokens of the supply held by no address the books list (0 when the list is
        complete): supply - wallets - market balance - registry balance."""
        wallets = sum(h.wallet for h in self.holdings.values())
        return self.supply - wallets - self.market_balance - self.registry_balance

    def market_shortfall(self, open_escrow: int = 0) -> int:
        """What the market holds minus what it owes (escrow of live jobs, bonds, credits, audit
        pool, fees); 0 when solvent and exact."""
        credits = sum(h.credits for h in self.holdings.values())
        owed = open_escrow + self.bonds + credits + self.audit_pool + self.protocol_fees
        return self.market_balance - owed

    def registry_shortfall(self) -> tuple[int, int]:
        """(registry balance - total staked, total staked - the listed stakes): both 0 when the
        registry holds exactly the stakes it records and every staker is listed."""
        stakes = sum(h.stake for h in self.holdings.values())
        return self.registry_balance - self.total_staked, self.total_staked - stakes


def read_books(market: Market, addresses: Sequence[str], providers: Sequence[str]) -> Books:
    """The books over `addresses` (every token holder of the devnet); `providers` among them
    also get their stake and counters."""
    holdings: dict[str, Holding] = {}
    staked = {p.lower() for p in providers}
    for address in addresses:
        wallet, credits = market.balance_of(address), market.credits(address)
        if address.lower() in staked:
            p = market.provider(address)
            holdings[address] = Holding(wallet, credits, p.stake, p.jobs_done, p.jobs_slashed)
        else:
            holdings[address] = Holding(wallet, credits, 0)
    return Books(
        holdings=holdings,
        audit_pool=market.audit_pool(),
        protocol_fees=market.protocol_fees(),
        bonds=market.total_bonds(),
        supply=market.total_supply(),
        market_balance=market.balance_of(market.deployment.market),
        registry_balance=market.balance_of(market.deployment.registry),
        total_staked=market.total_staked(),
    )


@dataclass(frozen=True)
class Conservation:
    """Token conservation between two snapshots taken with no job open, in base units."""

    #: Change of wallet + credits + stake over every listed address.
    accounts: int
    #: Change of the audit pool, protocol fees and challenge bonds held by the market.
    pools: int
    #: Tokens burned (supply before - supply after).
    burned: int
    #: Supply held by no listed address, before and after (both 0 when the list is complete).
    unaccounted: tuple[int, int]
    #: Market balance minus what it owes, and registry balance minus stakes, after.
    market_shortfall: int
    registry_shortfall: tuple[int, int]

    @property
    def imbalance(self) -> int:
        """accounts + pools + burned: 0 when every token that moved is accounted for."""
        return self.accounts + self.pools + self.burned

    @property
    def ok(self) -> bool:
        return (
            self.imbalance == 0
            and self.unaccounted == (0, 0)
            and self.market_shortfall == 0
            and self.registry_shortfall == (0, 0)
        )


def conservation(before: Books, after: Books) -> Conservation:
    accounts = sum(after.holdings[a].total - before.holdings[a].total for a in before.holdings)
    return Conservation(
        accounts=accounts,
        pools=after.pools - before.pools,
        burned=before.supply - after.supply,
        unaccounted=(before.unaccounted(), after.unaccounted()),
        market_shortfall=after.market_shortfall(),
        registry_shortfall=after.registry_shortfall(),
    )
