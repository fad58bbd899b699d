"""The relayer's dashboard in a real browser (Debian's headless chromium, driven by Playwright)
while the demo runs on a devnet of real processes (Anvil, Redis, the relayer, four providers of
which one is lazy, each with its Celery worker): the jobs page opens before any job exists and
fills by itself as the batch is submitted and settled, the lazy provider shows as slashed, a
job it was slashed in shows its verdict, and screenshots are written under the test's output.

Set DEPIN_DASHBOARD_SCREENSHOT to a path to also write the overview's screenshot there (the
README's docs/images/dashboard.png is made that way).
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
from marketplace.devnet.manager import Devnet, DevnetError

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
#: Seconds for the devnet's relayer to answer, and for the batch to reach its end.
RELAYER_SECONDS = 120.0
BATCH_SECONDS = 240.0
JOBS = 5


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


class _Demo:
    """`run_demo` in a thread, with the devnet kept up at the end for the pages to be read."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.out = io.StringIO()
        self.report: DemoReport | None = None
        self.error: BaseException | None = None
        config = DemoConfig(
            providers=4,
            lazy=1,
            jobs=JOBS,
            audit_bps=10_000,
            timeout=BATCH_SECONDS - 60,
            dir=directory,
            keep=True,
            keep_up=True,
        )
        self.thread = threading.Thread(target=self._run, args=(config,), daemon=True)

    def _run(self, config: DemoConfig) -> None:
        try:
            self.report = run_demo(config, Console(file=self.out, width=120))
        except BaseException as exc:
            self.error = exc

    def story(self) -> str:
        return self.out.getvalue()[-6000:]

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

    def stop(self) -> None:
        self.thread.join(timeout=BATCH_SECONDS)
        with contextlib.suppress(DevnetError, OSError):
            Devnet.attach(self.directory / "devnet").down()


def test_the_dashboard_follows_the_demo(browser: Any, tmp_path: Path) -> None:
    demo = _Demo(tmp_path / "demo")
    demo.thread.start()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        url = demo.relayer_url()
        page.goto(f"{url}/ui/jobs")
        assert page.locator("tr[data-job]").count() == 0, "jobs listed before the batch"
        # Set on this document only: still there later means the rows came without a reload.
        page.evaluate("window.untouched = true")
        page.wait_for_function(
            f"document.querySelectorAll('tr[data-job]').length === {JOBS}",
            timeout=RELAYER_SECONDS * 1000,
        )
        page.wait_for_function(
            "[...document.querySelectorAll('tr[data-job]')].every("
            "r => ['settled', 'refunded', 'expired'].includes(r.dataset.state))",
            timeout=BATCH_SECONDS * 1000,
        )
        assert page.evaluate("window.untouched") is True, "the page reloaded"
        assert page.locator("#live-state.on").count() == 1, "refreshes lost the stream's state"
        page.screenshot(path=str(tmp_path / "jobs.png"), full_page=True)

        demo.thread.join(timeout=BATCH_SECONDS)
        assert demo.error is None, f"{demo.error!r}\n{demo.story()}"
        report = demo.report
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
        demo.stop()
