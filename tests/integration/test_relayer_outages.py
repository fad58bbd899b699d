"""The relayer against its dependencies going away, with real processes: Anvil killed with
SIGKILL and restarted on the same port from its last state dump (the chain comes back shorter,
without the relayer's assignments), the SQLite database locked by another connection, and the
API's database unreachable. Each time the service stays up, logs one warning per outage and one
recovery line, and resumes by itself; no job is assigned twice and none is left waiting."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from web3 import Web3

from marketplace.cli.relayer import api_app
from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, advance, funded_account, mine
from marketplace.index.store import Store
from marketplace.protocol.client import JobState, Market
from marketplace.protocol.heartbeat import sign_heartbeat
from marketplace.relayer.service import Relayer
from tests.conftest import reverted, serve
from tests.integration.test_relayer_service import request, settings_for

pytestmark = pytest.mark.integration

#: Seconds the relayer may take to resume once a dependency is back (its backoff is capped at 1).
RESUME = 20.0
#: A relayer that polls and retries quickly, so outages begin and end within seconds.
QUICK = {"poll_interval": 0.2, "max_backoff": 1.0}


def wait_until(what: str, ready: Callable[[], bool], timeout: float = RESUME) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"not {what} within {timeout:.0f} s"
        time.sleep(0.2)


def outage_lines(caplog: pytest.LogCaptureFixture, name: str) -> tuple[int, int]:
    """(warnings that `name` is unavailable, lines that it is back)."""
    down = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and f"{name}" in r.getMessage() and "unavailable" in r.msg
    ]
    back = [
        r
        for r in caplog.records
        if r.levelno == logging.INFO and f"{name}" in r.getMessage() and "is back" in r.msg
    ]
    return len(down), len(back)


@contextmanager
def running(relayer: Relayer) -> Iterator[threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=relayer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()


def assignments(relayer: Relayer, job_ids: list[int]) -> dict[int, int]:
    """ProviderAssigned events per job in the relayer's store (the chain's, once caught up)."""
    return {
        j: Counter(h.event for h in relayer.store.history(j))["ProviderAssigned"] for j in job_ids
    }


def test_anvil_killed_and_restarted_from_an_older_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A node of its own: the test kills it and starts it again from an older state dump.
    anvil = Anvil(state_file=tmp_path / "anvil-state.json", log_file=tmp_path / "anvil.log")
    anvil.start()
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 5}))
        cast = scenarios.setup(w3, funded_account(w3), providers=4)
        scenarios.set_audit_rate(cast, 0)
        first = cast.requester.create_jobs([request(1, i) for i in range(4)])
        # A clean stop dumps the chain with these jobs Open: the state a crash returns to.
        anvil.stop()
        anvil.start()

        relayer = Relayer(settings_for(cast, tmp_path).model_copy(update=QUICK))
        caplog.set_level(logging.INFO)
        with running(relayer) as loop:
            wait_until(
                "first batch assigned",
                lambda: all(cast.owner.state(j) == JobState.ASSIGNED for j in first),
            )
            head_before = w3.eth.block_number
            anvil.kill()  # the assignments were never dumped
            time.sleep(3)  # several failed steps: still one warning
            assert loop.is_alive()
            anvil.start()  # same port, same chain id, the chain as of the dump
            assert w3.eth.block_number < head_before
            assert all(cast.owner.state(j) == JobState.OPEN for j in first)
            # The test's own clients remember nonces of the lost chain; the relayer re-reads.
            for client in (cast.requester, cast.owner):
                assert client.signer is not None
                client.signer.reset_nonce()
            second = cast.requester.create_jobs([request(1, 10 + i) for i in range(3)])
            every = first + second
            wait_until(
                "every job assigned after the restart",
                lambda: all(cast.owner.state(j) == JobState.ASSIGNED for j in every),
            )
            wait_until(
                "the store caught up",
                lambda: all(
                    (row := relayer.store.job(j)) is not None and row.state == JobState.ASSIGNED
                    for j in every
                ),
            )
            assert loop.is_alive()
        # Once each on the chain that stayed: the lost assignments are gone from the store too.
        assert assignments(relayer, every) == dict.fromkeys(every, 1)
        assert outage_lines(caplog, "RPC") == (1, 1)
        relayer.close()
    finally:
        anvil.stop()


def test_assignments_lost_with_a_rollback_are_matched_again_before_the_listener_sees_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # With confirmations the listener lags the head, so the relayer's own book of jobs it
    # assigned is what keeps them out of matching. A rollback that takes the assignments must
    # empty that book at once, or the jobs wait until the chain grows past the lost block.
    # A node of its own: the test kills it and starts it again from an older state dump.
    anvil = Anvil(state_file=tmp_path / "anvil-state.json", log_file=tmp_path / "anvil.log")
    anvil.start()
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 5}))
        cast = scenarios.setup(w3, funded_account(w3), providers=3)
        scenarios.set_audit_rate(cast, 0)
        jobs = cast.requester.create_jobs([request(1, i) for i in range(3)])
        mine(w3, 6)  # the creations are final at 5 confirmations
        anvil.stop()  # dumped: jobs Open
        anvil.start()
        settings = settings_for(cast, tmp_path).model_copy(update={"confirmations": 5})
        relayer = Relayer(settings)
        assert sorted(relayer.step().assigned) == sorted(jobs)
        assert relayer.step().assigned == []  # in flight: not matched twice
        anvil.kill()
        anvil.start()  # the assignment block is gone; the listener never applied it
        caplog.set_level(logging.WARNING)
        report = relayer.step()
        assert sorted(report.assigned) == sorted(jobs)
        assert "are gone from the chain" in caplog.text
        assert all(cast.owner.state(j) == JobState.ASSIGNED for j in jobs)
        relayer.close()
    finally:
        anvil.stop()


@pytest.fixture(scope="module")
def _deployed(anvil: Anvil) -> Iterator[scenarios.Cast]:
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 10}))
    with reverted(w3):
        cast = scenarios.setup(w3, funded_account(w3), providers=4)
        scenarios.set_audit_rate(cast, 0)
        yield cast


@pytest.fixture
def cast(_deployed: scenarios.Cast) -> Iterator[scenarios.Cast]:
    """Four providers and no job; what a test does to the chain is undone after it (each test
    stops its relayer first, and its store is its own)."""
    with reverted(_deployed.w3):
        yield _deployed


def test_locked_database_the_keeper_keeps_going_and_the_loop_resumes(
    cast: scenarios.Cast, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(cast, tmp_path).model_copy(update=QUICK)
    relayer = Relayer(settings)
    jobs = cast.requester.create_jobs([request(1, i) for i in range(3)])
    assert sorted(relayer.step().assigned) == sorted(jobs)
    by_address = {p.address: p for p in cast.providers.values()}
    for j in jobs:
        (part,) = cast.owner.participants(j)
        by_address[part.provider].commit(j, scenarios.GOOD)
        scenarios.draw_clear(cast.keeper, j)
    relayer.step()  # the store knows the jobs are committed
    advance(cast.w3, cast.owner.params().challenge_window + 1)  # finalizations fall due

    db = settings.sqlite_path()
    assert db is not None
    caplog.set_level(logging.INFO)
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # no writer gets in (busy_timeout 5 s, then locked)
    try:
        later = cast.requester.create_jobs([request(1, 10 + i) for i in range(2)])
        with running(relayer) as loop:
            # The listener cannot write, yet the keeper settles from the chain meanwhile.
            wait_until(
                "finalized during the outage",
                lambda: all(cast.owner.state(j) == JobState.SETTLED for j in jobs),
            )
            assert all(cast.owner.state(j) == JobState.OPEN for j in later)
            time.sleep(2)
            assert loop.is_alive()
            lock.execute("ROLLBACK")
            wait_until(
                "assigned after the outage",
                lambda: all(cast.owner.state(j) == JobState.ASSIGNED for j in later),
            )
            wait_until(
                "the store caught up",
                lambda: all(
                    (row := relayer.store.job(j)) is not None
                    and row.state == (JobState.SETTLED if j in jobs else JobState.ASSIGNED)
                    for j in jobs + later
                ),
            )
    finally:
        lock.close()
    assert assignments(relayer, jobs + later) == dict.fromkeys(jobs + later, 1)
    assert outage_lines(caplog, "relayer database") == (1, 1)
    relayer.close()


def test_api_answers_503_while_its_database_is_unreachable(
    cast: scenarios.Cast, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    settings = settings_for(cast, tmp_path).model_copy(
        update={
            **QUICK,
            "db_url": f"sqlite:///{data / 'relayer.sqlite3'}",
            "artifact_root": tmp_path / "a",
        }
    )
    data.mkdir()
    relayer = Relayer(settings)
    relayer.step()
    url, server, thread = serve(api_app(relayer))
    caplog.set_level(logging.INFO)
    moved = tmp_path / "moved"
    known, unseen = list(cast.providers.values())[:2]

    def beat(client: Market) -> httpx.Response:
        assert client.signer is not None
        hb = sign_heartbeat(
            client.signer.account,
            chain_id=cast.deployment.chain_id,
            market=cast.deployment.market,
            timestamp=int(time.time()),
            load=0,
            capacity=1,
            profiles=[0],
        )
        return http.post("/heartbeats", content=hb.model_dump_json())

    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/status").status_code == 200
            assert beat(known).status_code == 200
            # The database goes away the way a server restart looks to a client: the open
            # connections are dropped and new ones fail until it is back.
            data.rename(moved)
            data.write_text("not a directory")
            relayer.store.engine.dispose()
            for _ in range(5):
                down = http.get("/status")
                assert down.status_code == 503, down.text
                assert down.headers["retry-after"] == "2"
                assert "database is unavailable" in down.json()["detail"]
            assert http.get("/jobs").status_code == 503
            assert http.get("/healthz").status_code == 200  # the API itself is up
            # Heartbeats: a provider the API checked before stays live; one it cannot check
            # yet is asked to retry, not told it is unregistered.
            time.sleep(1.1)  # a newer timestamp than the accepted one
            assert beat(known).status_code == 200
            refused = beat(unseen)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
            data.unlink()
            moved.rename(data)
            assert http.get("/status").status_code == 200
            assert http.get("/jobs").status_code == 200
            assert beat(unseen).status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if moved.exists():
            if data.is_file():
                data.unlink()
            moved.rename(data)
        relayer.close()
    assert outage_lines(caplog, "(API)") == (1, 1)
    assert Store(settings.db_url).checkpoint(cast.deployment.chain_id) is not None
    shutil.rmtree(data)
