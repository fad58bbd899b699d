"""`depin devnet warp`'s duration parser: seconds or amounts with units, nothing else."""

from __future__ import annotations

import pytest

from marketplace.cli.devnet import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("90s", 90),
        ("45m", 2700),
        ("2h30m", 9000),
        ("9d", 777_600),
        ("1w2d", 777_600),
        (" 1H ", 3600),
        ("1d1h1m1s", 90_061),
    ],
)
def test_durations_in_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "9 d", "d9", "1.5h", "-5", "9dx", "h", "2h30"])
def test_anything_else_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a duration; give seconds \(3600\)"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0", "0s", "0d0h"])
def test_a_zero_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration(text)
