"""Token amounts for people: base units (what the contracts hold, 10**18 per token) to and from
decimal token strings, exactly (Decimal, never float)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final

from marketplace.protocol.errors import ConfigError

__all__ = ["DECIMALS", "UINT80_MAX", "UINT96_MAX", "format_tokens", "parse_tokens"]

#: The token's decimals: one token is 10**18 base units.
DECIMALS: Final = 18
#: The contracts' bounds on amounts: stakes (uint96) and prices per unit (uint80).
UINT96_MAX: Final = 2**96 - 1
UINT80_MAX: Final = 2**80 - 1


def format_tokens(units: int) -> str:
    """`units` base units as tokens, exactly, without trailing zeros: "1000", "0.5"."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**DECIMALS)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{DECIMALS}d}".rstrip("0")


def parse_tokens(
    text: str, *, what: str = "amount", maximum: int = UINT96_MAX, allow_zero: bool = False
) -> int:
    """Base units of `text` given in whole tokens ("1000", "0.5"); positive (or zero with
    `allow_zero`), at most 18 decimals, at most `maximum` base units."""
    try:
        value = Decimal(text.strip().replace("_", ""))
    except InvalidOperation:
        raise ConfigError(
            f"{what} {text!r} is not a number; give whole tokens like 1000 or 0.5"
        ) from None
    if not value.is_finite() or value < 0 or (value == 0 and not allow_zero):
        kind = "a positive or zero" if allow_zero else "a positive"
        raise ConfigError(f"{what} {text!r} must be {kind} number of tokens, like 1000 or 0.5")
    units = value.scaleb(DECIMALS)
    if units != units.to_integral_value():
        raise ConfigError(
            f"{what} {text!r} has more than {DECIMALS} decimals; the token has {DECIMALS}"
        )
    if units > maximum:
        raise ConfigError(
            f"{what} {text!r} exceeds the contract's limit of {format_tokens(maximum)}"
        )
    return int(units)
