"""The whole marketplace with real processes: the devnet of `make demo` (Anvil, Redis, the
relayer, three honest providers and a lazy one, each with its Celery worker) runs a smaller batch
of real embed jobs through `marketplace.demo.run_demo`, twice: on the demo's automining chain,
watched in a real browser, and on a chain that mines a block every second with the relayer and
the providers two confirmations behind the head, as on a real chain.

The books each run closes are checked here: every job terminal, tokens conserved to the wei
across every account and both contracts, the lazy provider slashed and no honest one, every
settled result decrypted and verified against its provider's commitment, one of them bit-exact
with a local run of the model, and no process left.

The browser (Debian's headless chromium, driven by Playwright) follows the automining run on the
relayer's dashboard: the jobs page opens before any job exists and fills by itself as the batch
is submitted and settled, the lazy provider shows as slashed, a job it was slashed in shows its
verdict, and screenshots are written under the test's output. Set DEPIN_DASHBOARD_SCREENSHOT to
a path to also write the overview's screenshot there (the README's docs/images/dashboard.png is
made that way).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from marketplace.demo import DemoConfig, DemoReport, run_demo
from marketplace.devnet import processes
from marketplace.devnet.manager import Devnet, DevnetError
from marketplace.protocol.client import JobState
from marketplace.requester import JobResult

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
#: Seconds for the devnet's relayer to answer, and for the batch to reach its end.
RELAYER_SECONDS = 120.0
BATCH_SECONDS = 300.0
JOBS = 5
#: The two chains the demo runs on: (block time, confirmations); None mines on each transaction.
MINING = {"automine": (None, 0), "interval": (1.0, 2)}


class _Demo:
    """`run_demo` in a thread; the automining run keeps its devnet up at the end for the
    dashboard's pages to be read, and `stop` takes it down."""

    def __init__(self, directory: Path, mining: str) -> None:
        self.directory = directory
        self.mining = mining
        self.out = io.StringIO()
        self.report: DemoReport | None = None
        self.error: BaseException | None = None
        block_time, confirmations = MINING[mining]
        config = DemoConfig(
            providers=4,
            lazy=1,
            jobs=JOBS,
            audit_bps=10_000,
            timeout=BATCH_SECONDS - 60,
            dir=directory,
            keep=True,
            keep_up=mining == "automine",
            block_time=block_time,
            confirmations=confirmations,
        )
        self.thread = threading.Thread(target=self._run, args=(config,), daemon=True)
        self.pgids: list[int] = []

    def _run(self, config: DemoConfig) -> None:
        try:
            self.report = run_demo(config, Console(file=self.out, width=120))
        except BaseException as exc:
            self.error = exc

    def story(self) -> str:
        return self.out.getvalue()[-6000:]

    def finished(self) -> DemoReport:
        self.thread.join(timeout=BATCH_SECONDS * 2)
        assert self.error is None, f"{self.error!r}\n{self.story()}"
        assert self.report is not None, f"the demo did not finish\n{self.story()}"
        return self.report

    def relayer_url(self) -> str:
        """The relayer's URL as soon as it answers (before the providers are up)."""
        state = self.directory / "devnet" / "state.json"
        deadline = time.monotonic() + RELAYER_SECONDS
        while time.monotonic() < deadline:
            assert self.thread.is_alive() or self.report, f"the demo ended early\n{self.story()}"
            with contextlib.suppress(OSError, ValueError, httpx.HTTPError):
                url = str(json.loads(state.read_text()).get("api_url", ""))
                if url and httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return url
            time.sleep(0.2)
        raise AssertionError(f"the relayer did not answer in {RELAYER_SECONDS} s\n{self.story()}")

    def stop(self) -> list[int]:
        """Takes a kept devnet down; returns the process groups still alive after."""
        self.thread.join(timeout=BATCH_SECONDS)
        with contextlib.suppress(DevnetError, OSError):
            devnet = Devnet.attach(self.directory / "devnet")
            self.pgids = [p.pgid for p in devnet.state.processes]
            devnet.down()
        return [g for g in self.pgids if processes.group_alive(g)]


@pytest.fixture(scope="module", params=list(MINING))
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Demo]:
    run = _Demo(tmp_path_factory.mktemp(f"e2e-{request.param}"), request.param)
    run.thread.start()
    try:
        yield run
    finally:
        run.stop()


@pytest.fixture()
def report(demo: _Demo) -> DemoReport:
    return demo.finished()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"no browser at {CHROMIUM}: the dashboard test drives Debian's chromium; "
            "run `apt-get install -y chromium` (.ci/run does when it runs as root)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.mark.parametrize("demo", ["automine"], indirect=True)
def test_the_dashboard_follows_the_demo(browser: Any, demo: _Demo, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        url = demo.relayer_url()
        page.goto(f"{url}/ui/jobs")
        assert page.locator("tr[data-job]").count() == 0, "jobs listed before the batch"
        # Set on this document only: still there later means the rows came without a reload.
        page.evaluate("window.untouched = true")
        page.wait_for_function(
            f"document.querySelectorAll('tr[data-job]').length === {JOBS}",
            # The batch is created only once every provider heartbeats, which on a loaded
            # machine takes longer than the relayer takes to answer.
            timeout=BATCH_SECONDS * 1000,
        )
        page.wait_for_function(
            "[...document.querySelectorAll('tr[data-job]')].every("
            "r => ['settled', 'refunded', 'expired'].includes(r.dataset.state))",
            timeout=BATCH_SECONDS * 1000,
        )
        assert page.evaluate("window.untouched") is True, "the page reloaded"
        assert page.locator("#live-state.on").count() == 1, "refreshes lost the stream's state"
        page.screenshot(path=str(tmp_path / "jobs.png"), full_page=True)

        report = demo.finished()
        assert report is not None and report.kept_up, demo.story()
        assert report.dashboard_url == url and f"dashboard {url}/" in demo.out.getvalue()
        (lazy,) = [p for p in report.providers if p.behavior == "lazy"]
        assert lazy.jobs_slashed >= 1, demo.story()

        page.goto(f"{url}/ui/providers")
        row = page.locator(f'tr[data-provider="{lazy.address}"]')
        assert row.get_attribute("class") == "slashed"
        assert "slashed" in row.locator(".badge.bad").inner_text()
        honest = page.locator("tr[data-provider]:not(.slashed)")
        assert honest.count() == 3

        caught = [
            j for j, who in report.slashed.items() if lazy.address.lower() in map(str.lower, who)
        ]
        assert caught, demo.story()
        page.goto(f"{url}/ui/jobs/{caught[0]}")
        outcome = page.locator("#outcome").inner_text()
        assert outcome in ("overturned", "upheld", "no verdict"), outcome
        assert lazy.address[:6] in page.locator("#verdict").inner_text()
        assert page.locator("#timeline li.JobClosed").count() == 1
        page.screenshot(path=str(tmp_path / "job.png"), full_page=True)

        page.goto(f"{url}/")
        assert page.locator("#conservation").get_attribute("class") == "ok"
        assert page.locator("#jobs-total").inner_text() == str(JOBS)
        page.wait_for_selector("#live-state.on", timeout=10_000)  # the event stream is open
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        readme = os.environ.get("DEPIN_DASHBOARD_SCREENSHOT")
        if readme:
            page.screenshot(path=readme, full_page=True)
        for shot in ("jobs.png", "job.png", "dashboard.png"):
            assert (tmp_path / shot).stat().st_size > 10_000
    finally:
        page.close()


def test_every_job_reaches_a_terminal_state(report: DemoReport, demo: _Demo) -> None:
    assert len(report.job_ids) == 5
    assert sorted(report.replicas.values()) == [1, 1, 1, 1, 3]
    assert all(state.terminal for state in report.states.values()), report.states
    assert JobState.EXPIRED not in report.states.values()


def test_tokens_are_conserved_exactly(report: DemoReport, demo: _Demo) -> None:
    c = report.conservation
    assert c is not None
    assert c.accounts + c.pools + c.burned == 0
    assert c.unaccounted == (0, 0)  # every holder of the supply is in the books
    assert c.market_shortfall == 0  # the market holds exactly what it owes
    assert c.registry_shortfall == (0, 0)  # the registry holds exactly the stakes
    assert c.burned > 0, demo.story()  # a slash burned its share


def test_the_lazy_provider_is_slashed_and_no_honest_one(report: DemoReport, demo: _Demo) -> None:
    lazy = [p for p in report.providers if p.behavior == "lazy"]
    honest = [p for p in report.providers if p.behavior == "honest"]
    assert len(lazy) == 1 and len(honest) == 3
    (cheat,) = lazy
    assert cheat.executed >= 1, demo.story()
    assert cheat.jobs_slashed >= 1 and cheat.stake_after < cheat.stake_before, demo.story()
    assert cheat.jobs_done == 0 and cheat.earned <= 0, demo.story()
    for p in honest:
        assert p.jobs_slashed == 0 and p.stake_after == p.stake_before, (p, demo.story())
        assert p.jobs_done >= 1 and p.earned > 0, (p, demo.story())


def test_results_decrypt_verify_and_match_a_local_run(report: DemoReport, demo: _Demo) -> None:
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


def test_every_claim_passes_and_no_process_is_left(report: DemoReport, demo: _Demo) -> None:
    # A kept devnet (the browser's run) is taken down here: nothing may outlive `down`.
    assert (demo.stop() if report.kept_up else report.left_running) == []
    assert report.ok, ([what for what, passed in report.checks() if not passed], demo.story())
