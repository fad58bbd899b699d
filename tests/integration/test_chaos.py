"""The short chaos suite: every fault of `make chaos` against one devnet with real processes
(fewer jobs, shorter outages). Each trial must end with every job terminal, no double commit or
pay, exact conservation and no honest provider slashed."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from marketplace.devnet.chaos import FAULTS, ChaosConfig, run_chaos, table


def test_every_fault_leaves_honest_providers_unslashed(tmp_path: Path) -> None:
    console = Console(width=200, force_terminal=False)
    config = ChaosConfig(jobs=4, short=True, dir=tmp_path, drain_timeout=420.0)
    trials = run_chaos(config, console)
    console.print(table(trials))
    assert [t.fault for t in trials] == [f.name for f in FAULTS]
    # Every field `Trial.ok` reads, so a failure in CI says which promise broke.
    failed = {
        t.fault: {
            "error": t.error,
            "in_flight": t.in_flight,
            "states": dict(t.states),
            "not_terminal": t.not_terminal,
            "double_commits": t.double_commits,
            "double_pays": t.double_pays,
            "conservation": t.conservation,
            "honest_slashes": t.honest_slashes,
            "honest_releases": t.honest_releases,
        }
        for t in trials
        if not t.ok
    }
    assert not failed, f"faults that broke a promise: {failed}; logs in {tmp_path}"
    assert all(t.drain is not None for t in trials)


@pytest.mark.parametrize("faults", [("no-such-fault",)])
def test_unknown_faults_are_refused_before_anything_starts(
    tmp_path: Path, faults: tuple[str, ...]
) -> None:
    from marketplace.devnet.chaos import ChaosError

    with pytest.raises(ChaosError, match="unknown fault"):
        run_chaos(ChaosConfig(faults=faults, dir=tmp_path), Console())
    assert not (tmp_path / "devnet").exists()
