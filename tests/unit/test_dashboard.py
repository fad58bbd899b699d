"""The web dashboard's pages, served by the real app over a real SQLite store filled the way the
listener fills it (events ABI-encoded, decoded and applied by `Store.apply`): the market figures
and the credits check, job filters and server-side pages (10,000 jobs), a job's timeline and
verdict, providers with a slashed one, and the event stream that tells a page the index moved."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from eth_utils.address import to_checksum_address
from fastapi.testclient import TestClient

from marketplace.api.app import create_app
from marketplace.api.chain_routes import chain_router
from marketplace.api.routes.dashboard import PAGE_SIZE, chart, tokens
from marketplace.api.settings import ApiSettings
from marketplace.index.store import JobRow, JobTiming, ParticipantRow, Store
from marketplace.protocol.client import JobState, ProviderTerms
from marketplace.protocol.deployment import MarketParams
from tests.conftest import serve
from tests.unit.test_store_queries import DEPLOYMENT, DIGEST, Chain, _assign, _commit, _create

HONEST, LAZY, VERIFIER = ("0x" + c * 40 for c in "abc")
REQUESTER = "0x" + "e1" * 20
TOKEN = 10**18


def _client(store: Store, tmp_path: Path) -> TestClient:
    app = create_app(
        ApiSettings(artifact_root=tmp_path / "artifacts"), routers=[chain_router(store)]
    )
    return TestClient(app)


def _register(chain: Chain, *providers: str) -> None:
    chain.emit("ParamsSet", params=MarketParams())
    for p in providers:
        chain.emit(
            "ProviderRegistered",
            provider=p,
            terms=ProviderTerms(profile_mask=1, price_per_unit=500),
        )
        chain.emit("Staked", provider=p, amount=10 * TOKEN, stake=10 * TOKEN)


def _close(chain: Chain, job_id: int, state: JobState, digest: bytes, **amounts: int) -> None:
    chain.emit("JobClosed", job_id=job_id, state=state, digest=digest, **amounts)


@pytest.fixture
def market(tmp_path: Path) -> Iterator[tuple[Store, Chain]]:
    """Job 1 settled unverified (the honest executor paid, the requester refunded the rest);
    job 2 executed by the lazy provider, audited, the verifier upheld against it: refunded, the
    lazy provider slashed and part burned; job 3 open."""
    store = Store(f"sqlite:///{tmp_path / 'relayer.sqlite3'}")
    store.bind(DEPLOYMENT)
    chain = Chain()
    _register(chain, HONEST, LAZY, VERIFIER)
    chain.mine(store)
    _create(chain, 1, REQUESTER, 1)
    _create(chain, 2, REQUESTER, 2)
    chain.mine(store)
    _assign(chain, 1, HONEST)
    _assign(chain, 2, LAZY)
    chain.mine(store)
    _commit(chain, 1, HONEST)
    _commit(chain, 2, LAZY)
    chain.emit("AuditDrawn", job_id=1, audited=False)
    chain.emit("AuditDrawn", job_id=2, audited=True)
    chain.emit("AuditStarted", job_id=2, round=1, seats=1, seed_block=12, staff_by=4_000)
    _assign(chain, 2, VERIFIER, index=1)
    chain.mine(store)
    chain.emit("Credited", job_id=1, account=HONEST, amount=500)
    chain.emit("Credited", job_id=1, account=REQUESTER, amount=480)
    _close(chain, 1, JobState.SETTLED, bytes(32), paid=500, refunded=480, fees=20, burned=0)
    chain.emit("ResultRevealed", job_id=2, provider=VERIFIER, digest=DIGEST)
    chain.emit("ResultRevealed", job_id=2, provider=LAZY, digest=b"\x01" * 32)
    chain.emit("ProviderSlashed", job_id=2, provider=LAZY, amount=3_000)
    chain.emit("Slashed", job_id=2, provider=LAZY, amount=3_000)
    chain.emit("Credited", job_id=2, account=VERIFIER, amount=1_000)
    chain.emit("Credited", job_id=2, account=REQUESTER, amount=2_900)
    _close(chain, 2, JobState.REFUNDED, DIGEST, paid=1_000, refunded=2_900, fees=100, burned=1_000)
    _create(chain, 3, REQUESTER, 3)
    chain.mine(store)
    yield store, chain
    store.close()


def test_overview_shows_states_totals_credits_check_and_chart(
    market: tuple[Store, Chain], tmp_path: Path
) -> None:
    store, _ = market
    page = _client(store, tmp_path).get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    for state, count in (("open", 1), ("settled", 1), ("refunded", 1), ("assigned", 0)):
        assert f'data-count="{state}">{count}<' in html
    assert 'id="jobs-total">3<' in html
    assert 'id="burned" title="1000 wei"' in html
    assert "2 closed jobs paid or refunded was credited to an account, exactly" in html
    assert html.count("<rect class=") >= 2 and 'class="latency"' in html
    # The lazy provider is named as slashed; nothing is fetched from another host.
    assert f'class="addr slashed" href="/ui/providers/{to_checksum_address(LAZY)}"' in html
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html)


def test_the_credits_check_names_a_job_whose_credits_differ(
    market: tuple[Store, Chain], tmp_path: Path
) -> None:
    store, chain = market
    _assign(chain, 3, HONEST)
    _commit(chain, 3, HONEST)
    chain.emit("Credited", job_id=3, account=HONEST, amount=100)  # the close says 200 paid
    _close(chain, 3, JobState.SETTLED, bytes(32), paid=200, refunded=0, fees=0, burned=0)
    chain.mine(store)
    assert store.market_totals().uncredited == (3,)
    html = _client(store, tmp_path).get("/").text
    assert 'id="conservation" class="bad"' in html and '<a href="/ui/jobs/3">#3</a>' in html


def test_metrics_carry_the_market_figures_of_the_index(
    market: tuple[Store, Chain], tmp_path: Path
) -> None:
    store, chain = market
    client = _client(store, tmp_path)
    body = client.get("/metrics").text
    for line in (
        'depin_jobs{state="open"} 1.0',
        'depin_jobs{state="settled"} 1.0',
        'depin_jobs{state="refunded"} 1.0',
        'depin_jobs{state="assigned"} 0.0',
        'depin_market_tokens{kind="paid"} 1500.0',
        'depin_market_tokens{kind="refunded"} 3380.0',
        'depin_market_tokens{kind="burned"} 1000.0',
        'depin_market_tokens{kind="credited"} 4880.0',
        "depin_jobs_closed 2.0",
        "depin_market_credits_balanced 1.0",
    ):
        assert line in body.splitlines(), (line, body[-2000:])
    # A close whose payout was not credited in full turns the check off at the next scrape.
    _assign(chain, 3, HONEST)
    _commit(chain, 3, HONEST)
    chain.emit("Credited", job_id=3, account=HONEST, amount=100)
    _close(chain, 3, JobState.SETTLED, bytes(32), paid=200, refunded=0, fees=0, burned=0)
    chain.mine(store)
    body = client.get("/metrics").text
    assert "depin_market_credits_balanced 0.0" in body.splitlines()
    assert 'depin_jobs{state="settled"} 2.0' in body.splitlines()


def test_jobs_table_filters_by_state_requester_and_provider(
    market: tuple[Store, Chain], tmp_path: Path
) -> None:
    client = _client(market[0], tmp_path)

    def ids(**params: str) -> list[int]:
        page = client.get("/ui/jobs", params=params)
        assert page.status_code == 200, page.text
        return [int(i) for i in re.findall(r'<tr data-job="(\d+)"', page.text)]

    assert ids() == [3, 2, 1]
    assert ids(state="settled") == [1]
    assert ids(state="open", requester="", provider="") == [3]  # empty fields mean any
    assert ids(requester=REQUESTER) == [3, 2, 1]
    assert ids(requester=HONEST) == []
    assert ids(provider=VERIFIER) == [2]  # a verifier seat counts
    bad = client.get("/ui/jobs", params={"state": "done"})
    assert bad.status_code == 400 and "unknown job state &#39;done&#39;" in bad.text
    bad = client.get("/ui/jobs", params={"provider": "0x12"})
    assert bad.status_code == 400 and "give 0x and 40 hex digits" in bad.text


def test_job_page_shows_timeline_participants_audit_and_verdict(
    market: tuple[Store, Chain], tmp_path: Path
) -> None:
    store, _ = market
    client = _client(store, tmp_path)
    html = client.get("/ui/jobs/2").text
    assert 'id="outcome">overturned<' in html
    for event in store.history(2):
        assert f'title="{event.tx_hash}"' in html
    timeline = re.findall(r"<b>(\w+)</b>", html.split('id="timeline"')[1])
    assert timeline == [h.event for h in store.history(2)]
    assert timeline[0] == "JobCreated" and timeline[-1] == "JobClosed"
    assert "ProviderSlashed" in timeline and "AuditStarted" in timeline
    assert '<span class="badge bad">slashed' in html and "verifier (audit round 1)" in html
    assert "<h2>Audit draw</h2>" in html
    settled = client.get("/ui/jobs/1").text
    assert 'id="outcome">settled unverified<' in settled and "not selected for audit" in settled
    assert "Not closed yet." in client.get("/ui/jobs/3").text
    missing = client.get("/ui/jobs/99")
    assert missing.status_code == 404 and "job 99 is not in the relayer's index" in missing.text


def test_providers_show_the_slashed_one_and_each_page_its_jobs(
    market: tuple[Store, Chain], tmp_path: Path
) -> None:
    client = _client(market[0], tmp_path)
    html = client.get("/ui/providers").text
    rows = dict(re.findall(r'<tr data-provider="(0x\w+)" class="(\w*)"', html))
    assert rows == {
        to_checksum_address(HONEST): "",
        to_checksum_address(LAZY): "slashed",
        to_checksum_address(VERIFIER): "",
    }
    lazy = client.get(f"/ui/providers/{LAZY}")
    assert lazy.status_code == 200
    assert re.findall(r'<tr data-job="(\d+)"', lazy.text) == ["2"]
    assert "ProviderSlashed" in lazy.text and '<span class="badge bad">slashed</span>' in lazy.text
    assert client.get("/ui/providers/0x" + "99" * 20).status_code == 404
    assert client.get("/ui/providers/nope").status_code == 400


def test_static_assets_are_served_locally(market: tuple[Store, Chain], tmp_path: Path) -> None:
    client = _client(market[0], tmp_path)
    script = client.get("/ui/static/live.js")
    assert script.status_code == 200 and "EventSource" in script.text
    assert client.get("/ui/static/dashboard.css").status_code == 200


def test_an_app_without_the_index_serves_no_dashboard(tmp_path: Path) -> None:
    client = TestClient(create_app(ApiSettings(artifact_root=tmp_path / "artifacts")))
    assert client.get("/").status_code == 404


def test_chart_counts_created_and_closed_per_column_with_mean_latency() -> None:
    timings = [JobTiming(1, 100, 110), JobTiming(2, 100, 130), JobTiming(3, 105, None)]
    drawn = chart(timings, head=147, columns=4)
    assert drawn is not None
    assert [(b.first_block, b.last_block) for b in drawn.bars] == [
        (100, 111),
        (112, 123),
        (124, 135),
        (136, 147),
    ]
    assert [(b.created, b.closed, b.latency) for b in drawn.bars] == [
        (3, 1, 10.0),
        (0, 0, None),
        (0, 1, 30.0),
        (0, 0, None),
    ]
    assert drawn.peak == 3 and drawn.peak_latency == 30.0
    assert chart([], head=5) is None


def test_tokens_are_whole_tokens_trimmed() -> None:
    assert tokens(12 * TOKEN + TOKEN // 4) == "12.25"
    assert tokens(1234 * TOKEN) == "1,234"
    assert tokens(0) == "0" and tokens(None) == "-"
    assert tokens(3) == "<0.000001"


# ---------------------------------------------------------------------- 10,000 jobs


JOBS = 10_000


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    """10,000 jobs from two requesters, every third one assigned to the honest provider. The
    rows are written with the index's own tables in one transaction: folding 13,000 decoded
    events one by one takes minutes, and the folding is covered by the tests above."""
    tmp = tmp_path_factory.mktemp("crowded")
    store = Store(f"sqlite:///{tmp / 'relayer.sqlite3'}")
    store.bind(DEPLOYMENT)
    chain = Chain()
    _register(chain, HONEST)
    chain.mine(store)
    honest = to_checksum_address(HONEST)
    with store.session() as s:
        for job_id in range(1, JOBS + 1):
            assigned = job_id % 3 == 0
            s.add(
                JobRow(
                    job_id=job_id,
                    requester=to_checksum_address(REQUESTER if job_id % 2 else HONEST),
                    state=JobState.ASSIGNED if assigned else JobState.OPEN,
                    spec_hash="0x" + "00" * 32,
                    replicas=1,
                    units=1,
                    max_price_per_unit=1_000,
                    profile=0,
                    min_vram_gib=0,
                    accept_window=60,
                    exec_window=600,
                    escrow=1_000,
                    collateral=0,
                    fee_bps=100,
                    accept_by=1_000,
                    deadline=None,
                    created_block=DEPLOYMENT.block + job_id // 100,
                    last_event="JobCreated",
                    last_block=DEPLOYMENT.block + job_id // 100,
                )
            )
            if assigned:
                s.add(
                    ParticipantRow(
                        job_id=job_id,
                        round=0,
                        index=0,
                        provider=honest,
                        verifier=False,
                        price_per_unit=500,
                        deadline=2_000,
                        collateral=0,
                        assigned_block=DEPLOYMENT.block + job_id // 100,
                    )
                )
        s.commit()
    yield store, tmp
    store.close()


def test_ten_thousand_jobs_page_on_the_server(crowded: tuple[Store, Path]) -> None:
    store, tmp = crowded
    client = _client(store, tmp)
    # Paged by the database, not in Python: each page's job query carries LIMIT and OFFSET.
    # (How fast that is belongs to a benchmark, not to a test.)
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        statements.append((sql, params))

    sqlalchemy.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        last = -(-JOBS // PAGE_SIZE)
        for page, first in ((1, JOBS), (100, JOBS - 99 * PAGE_SIZE), (last, PAGE_SIZE)):
            statements.clear()
            html = client.get("/ui/jobs", params={"page": page}).text
            ids = [int(i) for i in re.findall(r'<tr data-job="(\d+)"', html)]
            assert ids == list(range(first, first - PAGE_SIZE, -1)), page
            assert f"page {page} of {last} · {JOBS} jobs" in html
            paged = [
                (sql, params) for sql, params in statements if "LIMIT" in sql and "OFFSET" in sql
            ]
            assert paged, f"page {page} was not paged by the database: {statements}"
            assert any((page - 1) * PAGE_SIZE in _values(params) for _, params in paged), page
        html = client.get(
            "/ui/jobs", params={"provider": HONEST, "state": "assigned", "page": 3}
        ).text
        ids = [int(i) for i in re.findall(r'<tr data-job="(\d+)"', html)]
        assert ids == list(range(9_999 - 2 * PAGE_SIZE * 3, 9_999 - 3 * PAGE_SIZE * 3, -3))
        overview = client.get("/").text
        assert 'id="jobs-total">10000<' in overview
    finally:
        sqlalchemy.event.remove(store.engine, "before_cursor_execute", seen)


def _values(params: Any) -> list[Any]:
    """The bound values of one statement, whatever shape the driver was given them in."""
    if isinstance(params, dict):
        return list(params.values())
    return list(params or ())


# ---------------------------------------------------------------------- live updates


def test_event_stream_announces_each_move_of_the_index(
    market: tuple[Store, Chain], tmp_path: Path
) -> None:
    store, chain = market
    app = create_app(
        ApiSettings(artifact_root=tmp_path / "artifacts"), routers=[chain_router(store)]
    )
    url, server, thread = serve(app)
    try:
        with (
            httpx.Client(timeout=10) as http,
            http.stream("GET", f"{url}/ui/events") as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            changes: list[str] = []

            def next_change() -> str:
                for line in lines:
                    if line.startswith("data: "):
                        return line.removeprefix("data: ")
                raise AssertionError("the stream ended")

            changes.append(next_change())
            position = store.position()
            assert position is not None
            assert changes[0] == f"{position.block_number}:{position.block_hash}"
            _create(chain, 4, REQUESTER, 4)
            chain.mine(store)
            changes.append(next_change())
            assert changes[1] == f"{position.block_number + 1}:{store.position().block_hash}"  # type: ignore[union-attr]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()
