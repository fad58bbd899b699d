"""The whole marketplace with real processes: the devnet of `make demo` (Anvil, Redis, the
relayer, three honest providers and a lazy one, each with its Celery worker) runs a smaller batch
of real embed jobs through `marketplace.demo.run_demo`, and the books it closes are checked here:
every job terminal, tokens conserved to the wei across every account and both contracts, the
lazy provider slashed and no honest one, every settled result decrypted and verified against its
provider's commitment, one of them bit-exact with a local run of the model, and no process left.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from marketplace.demo import DemoConfig, DemoReport, run_demo
from marketplace.protocol.client import JobState
from marketplace.requester import JobResult

pytestmark = pytest.mark.integration

#: What the demo printed: part of every claim's failure message (the devnet's logs are gone by
#: then, and pytest shows the fixture's own output only under the test that set it up).
_printed: list[str] = []


def _story() -> str:
    return "\n".join(_printed)[-6000:]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> DemoReport:
    directory: Path = tmp_path_factory.mktemp("e2e")
    out = io.StringIO()
    config = DemoConfig(providers=4, lazy=1, jobs=5, audit_bps=10_000, timeout=180, dir=directory)
    try:
        return run_demo(config, Console(file=out, width=120))
    finally:
        _printed.append(out.getvalue())


def test_every_job_reaches_a_terminal_state(report: DemoReport) -> None:
    assert len(report.job_ids) == 5
    assert sorted(report.replicas.values()) == [1, 1, 1, 1, 3]
    assert all(state.terminal for state in report.states.values()), report.states
    assert JobState.EXPIRED not in report.states.values()


def test_tokens_are_conserved_exactly(report: DemoReport) -> None:
    c = report.conservation
    assert c is not None
    assert c.accounts + c.pools + c.burned == 0
    assert c.unaccounted == (0, 0)  # every holder of the supply is in the books
    assert c.market_shortfall == 0  # the market holds exactly what it owes
    assert c.registry_shortfall == (0, 0)  # the registry holds exactly the stakes
    assert c.burned > 0, _story()  # a slash burned its share


def test_the_lazy_provider_is_slashed_and_no_honest_one(report: DemoReport) -> None:
    lazy = [p for p in report.providers if p.behavior == "lazy"]
    honest = [p for p in report.providers if p.behavior == "honest"]
    assert len(lazy) == 1 and len(honest) == 3
    (cheat,) = lazy
    assert cheat.executed >= 1, _story()
    assert cheat.jobs_slashed >= 1 and cheat.stake_after < cheat.stake_before, _story()
    assert cheat.jobs_done == 0 and cheat.earned <= 0, _story()
    for p in honest:
        assert p.jobs_slashed == 0 and p.stake_after == p.stake_before, (p, _story())
        assert p.jobs_done >= 1 and p.earned > 0, (p, _story())


def test_results_decrypt_verify_and_match_a_local_run(report: DemoReport) -> None:
    settled = [j for j, s in report.states.items() if s is JobState.SETTLED]
    assert settled
    for job_id in settled:
        result = report.results[job_id]
        assert isinstance(result, JobResult), result
        assert result.ok and result.outputs["embeddings"].shape == (
            len(report.sentences[job_id]),
            384,
        )
    local = report.local
    assert local is not None
    assert local.remote_digest == local.local_digest
    assert local.max_abs_diff == 0.0


def test_every_claim_passes_and_no_process_is_left(report: DemoReport) -> None:
    assert report.left_running == []
    assert report.ok, ([what for what, passed in report.checks() if not passed], _story())
