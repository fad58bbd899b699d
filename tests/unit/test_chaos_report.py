"""What makes a chaos trial pass, and the command line of `make chaos`."""

from __future__ import annotations

from collections import Counter

import pytest
from rich.console import Console

from marketplace.devnet.books import Conservation
from marketplace.devnet.chaos import FAULTS, Trial, _parse, table

EXACT = Conservation(0, 0, 0, (0, 0), 0, (0, 0))


def _passing() -> Trial:
    return Trial(
        "relayer-down",
        jobs=3,
        in_flight=3,
        states=Counter(settled=3),
        conservation=EXACT,
        drain=12.0,
    )


def test_a_clean_trial_passes() -> None:
    assert _passing().ok


@pytest.mark.parametrize(
    "change",
    [
        {"honest_slashes": 1},
        {"in_flight": 0},
        {"honest_releases": 1},
        {"double_commits": 1},
        {"double_pays": 1},
        {"not_terminal": [7]},
        {"error": "anvil did not come back"},
        {"conservation": None},
        {"conservation": Conservation(5, 0, 0, (0, 0), 0, (0, 0))},
    ],
)
def test_any_broken_promise_fails_the_trial(change: dict[str, object]) -> None:
    trial = _passing()
    for name, value in change.items():
        setattr(trial, name, value)
    assert not trial.ok


def test_the_table_has_a_row_per_trial_with_its_verdict() -> None:
    failing = _passing()
    failing.fault, failing.honest_slashes, failing.slashes = "anvil-rollback", 2, 3
    console = Console(width=250, record=True)
    console.print(table([_passing(), failing]))
    text = console.export_text()
    assert "relayer-down" in text and "PASS" in text
    assert "anvil-rollback" in text and "FAIL" in text and "3 (2)" in text


def test_command_line() -> None:
    full = _parse([])
    assert full.jobs == 30 and full.faults == tuple(f.name for f in FAULTS) and not full.short
    short = _parse(["--short", "--faults", "redis-wipe,agent-kill"])
    assert short.jobs == 6 and short.faults == ("redis-wipe", "agent-kill")
    with pytest.raises(SystemExit):
        _parse(["--providers", "3"])
