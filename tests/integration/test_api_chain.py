"""The chain read endpoints (`chain_router`) over a store the listener filled from a real Anvil.

Scenario paths run on Anvil, a Listener applies their events to a SQLite store, and the API
(`create_app(routers=[chain_router(store, book)])`) is served by an in-process uvicorn on a
loopback socket. Every job and provider the API returns must equal the contracts' views
(`Market.job`, `Market.participants`, `Market.provider`, `Market.credits`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from web3 import Web3

from marketplace.api.app import create_app
from marketplace.api.chain_routes import chain_router
from marketplace.api.settings import ApiSettings
from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, advance, funded_account
from marketplace.index.listener import Listener
from marketplace.index.store import Store
from marketplace.protocol.client import JobRequest, JobState, Market
from marketplace.protocol.heartbeat import Heartbeat, MemoryLivenessBook
from tests.conftest import reverted, serve

pytestmark = pytest.mark.integration

INTERVAL = 10
NOW = 1_900_000_000


@dataclass
class World:
    url: str
    w3: Web3
    cast: scenarios.Cast
    market: Market
    jobs: dict[str, int]
    store: Store


def _request(units: int, replicas: int = 1) -> JobRequest:
    return JobRequest(
        spec_hash=hashlib.sha256(f"api-job-{units}".encode()).digest(),
        units=units,
        max_price_per_unit=scenarios.PRICE,
        replicas=replicas,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, anvil: Anvil) -> Iterator[World]:
    base = tmp_path_factory.mktemp("api_chain")
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 5}))
    with reverted(w3):
        cast = scenarios.setup(w3, funded_account(w3))
        jobs = {
            path.__name__: path(cast)
            for path in (
                scenarios.optimistic_settled,
                scenarios.replicas3_one_wrong,
                scenarios.no_show,
                scenarios.unbond_then_slashed,
                scenarios.escalation_no_verdict,
            )
        }
        jobs["open"] = cast.requester.create_job(_request(units=11))
        jobs["assigned"] = cast.requester.create_job(_request(units=12, replicas=3))
        alice, carol = cast.providers["alice"], cast.providers["carol"]
        dave = cast.providers["dave"]
        cast.matcher.assign(jobs["assigned"], [alice.address, carol.address, dave.address])
        alice.commit(jobs["assigned"], scenarios.GOOD)

        store = Store(f"sqlite:///{base / 'relayer.sqlite3'}")
        listener = Listener(w3, cast.deployment, store, confirmations=0)
        assert listener.poll_once() > 0

        book = MemoryLivenessBook()
        book.record(
            alice.address,
            Heartbeat(
                provider=alice.address,
                chain_id=cast.deployment.chain_id,
                market=cast.deployment.market,
                timestamp=NOW - 5,
                load=0,
                capacity=1,
                profiles=(0,),
            ),
        )
        settings = ApiSettings(artifact_root=base / "artifacts")
        router = chain_router(store, book, heartbeat_interval=INTERVAL, clock=lambda: NOW)
        url, server, thread = serve(create_app(settings, liveness=book, routers=[router]))
        try:
            yield World(url, w3, cast, Market(w3, cast.deployment), jobs, store)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            store.close()


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.url, timeout=10) as c:
        yield c


def get(client: httpx.Client, path: str, status: int = 200, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    return response.json()


# ---------------------------------------------------------------------- jobs


def test_every_job_equals_the_chain(world: World, client: httpx.Client) -> None:
    m = world.market
    count = m.job_count()
    page = get(client, "/jobs", limit=500)
    assert page["total"] == count == len(world.jobs)
    assert [j["job_id"] for j in page["jobs"]] == list(range(count, 0, -1))  # newest first
    listed = {j["job_id"]: j for j in page["jobs"]}
    for job_id in range(1, count + 1):
        chain = m.job(job_id)
        detail = get(client, f"/jobs/{job_id}")
        assert detail["state"] == chain.state.name.lower() == listed[job_id]["state"]
        assert detail["requester"] == chain.requester
        assert (detail["replicas"], detail["units"], detail["profile"]) == (
            chain.replicas,
            chain.units,
            chain.profile,
        )
        # Amounts are decimal strings, exact beyond 2**53.
        assert detail["max_price_per_unit"] == str(chain.max_price_per_unit)
        assert detail["clearing_price"] == str(chain.clearing_price)
        assert detail["collateral"] == str(chain.collateral)
        assert detail["fee_bps"] == chain.fee_bps
        on_chain = m.participants(job_id)
        assert [p["provider"] for p in detail["participants"]] == [p.provider for p in on_chain]
        assert [p["commit_block"] or 0 for p in detail["participants"]] == [
            p.commit_block for p in on_chain
        ]
        history = detail["history"]
        assert history[0]["event"] == "JobCreated" and history[0]["state"] == "open"
        assert history[-1]["state"] == detail["state"]
        order = [(h["block_number"], h["log_index"]) for h in history]
        assert order == sorted(order)
        detail_only = (
            "participants",
            "verifiers",
            "rounds",
            "verdict",
            "skipped",
            "history",
            "waiting",
        )
        assert {k: v for k, v in detail.items() if k not in detail_only} == listed[job_id]
        # Verifiers are the participants from index `replicas` on, all drawn on-chain.
        assert detail["verifiers"] == [p.provider for p in on_chain[chain.replicas :]]
        assert (detail["audit_round"], detail["seats"]) == (chain.round, chain.seats)
        assert (detail["verdict"] is None) == (not chain.state.terminal)


def test_job_history_follows_the_lifecycle(world: World, client: httpx.Client) -> None:
    def states(job_id: int) -> list[str]:
        out: list[str] = []
        for h in get(client, f"/jobs/{job_id}")["history"]:
            if not out or out[-1] != h["state"]:
                out.append(h["state"])
        return out

    j = world.jobs
    assert states(j["optimistic_settled"]) == ["open", "assigned", "committed", "settled"]
    assert states(j["no_show"]) == ["open", "assigned", "open", "assigned", "committed", "settled"]
    assert states(j["assigned"]) == ["open", "assigned"]
    wrong = get(client, f"/jobs/{j['replicas3_one_wrong']}")
    dave = world.cast.providers["dave"].address
    slashed = [h for h in wrong["history"] if h["event"] == "ProviderSlashed"]
    assert [h["account"] for h in slashed] == [dave]
    assert int(slashed[0]["amount"]) > 0
    assert [p["provider"] for p in wrong["participants"] if p["slashed"] is not None] == [dave]
    assert wrong["digest"] == "0x" + scenarios.GOOD.hex()
    # The replicas disagreed: one audit round of k drawn verifiers upheld the majority.
    k = world.market.params().verifiers
    (audit,) = wrong["rounds"]
    assert (audit["round"], audit["seats"], audit["staffed"]) == (1, k, True)
    assert audit["verifiers"] == wrong["verifiers"] and len(wrong["verifiers"]) == k
    assert audit["commit_by"] is not None and audit["staffed_block"] is not None
    verifiers = [p for p in wrong["participants"] if p["verifier"]]
    assert [p["audit_round"] for p in verifiers] == [1] * k
    assert wrong["verdict"]["outcome"] == "upheld"
    assert wrong["verdict"]["digest"] == wrong["digest"]
    assert wrong["verdict"]["slashed"] == [dave]
    assert set(wrong["verdict"]["upheld"]) == {
        p["provider"] for p in wrong["participants"] if p["provider"] != dave
    }
    # Escalated: round 1 of k seats, then round 2 of 2k + 1; no verdict, refunded.
    escalated = get(client, f"/jobs/{j['escalation_no_verdict']}")
    assert [(r["round"], r["seats"]) for r in escalated["rounds"]] == [(1, k), (2, 2 * k + 1)]
    assert escalated["verdict"]["outcome"] == "no_verdict" and escalated["state"] == "refunded"
    assert escalated["verdict"]["slashed"] == []
    assert get(client, f"/jobs/{j['optimistic_settled']}")["verdict"]["outcome"] == (
        "settled_unverified"
    )


def test_job_filters_and_pagination(world: World, client: httpx.Client) -> None:
    m = world.market
    count = m.job_count()
    truth = {i: m.job(i) for i in range(1, count + 1)}
    for state in JobState:
        if state is JobState.NONE:
            continue
        page = get(client, "/jobs", state=state.name.lower())
        expected = sorted((i for i, job in truth.items() if job.state == state), reverse=True)
        assert [j["job_id"] for j in page["jobs"]] == expected and page["total"] == len(expected)
    assert get(client, "/jobs", state="OPEN")["total"] == 1  # case-insensitive

    requester = world.cast.requester.address
    assert get(client, "/jobs", requester=requester.lower())["total"] == count
    assert get(client, "/jobs", requester=world.cast.matcher.address)["total"] == 0

    for name, p in world.cast.providers.items():
        expected = sorted(
            (i for i in truth if any(x.provider == p.address for x in m.participants(i))),
            reverse=True,
        )
        # The participants of earlier rounds count too (the no-show's first executor).
        if name == "frank":
            expected = sorted({*expected, world.jobs["no_show"]}, reverse=True)
        page = get(client, "/jobs", provider=p.address, limit=500)
        assert [j["job_id"] for j in page["jobs"]] == expected, name

    # Pages of 2 walk every job once, newest first.
    seen: list[int] = []
    for offset in range(0, count + 2, 2):
        page = get(client, "/jobs", limit=2, offset=offset)
        assert (page["limit"], page["offset"], page["total"]) == (2, offset, count)
        assert len(page["jobs"]) <= 2
        seen += [j["job_id"] for j in page["jobs"]]
    assert seen == list(range(count, 0, -1))
    assert get(client, "/jobs", offset=count)["jobs"] == []
    filtered = get(client, "/jobs", requester=requester, state="settled", limit=1, offset=1)
    settled = sorted((i for i, job in truth.items() if job.state == JobState.SETTLED), reverse=True)
    assert [j["job_id"] for j in filtered["jobs"]] == settled[1:2]


def test_job_errors(client: httpx.Client) -> None:
    assert "no job 999" in get(client, "/jobs/999", 404)["detail"]
    assert "no job 0" in get(client, "/jobs/0", 404)["detail"]
    get(client, "/jobs/abc", 422)
    assert "unknown job state" in get(client, "/jobs", 400, state="done")["detail"]
    assert "not an address" in get(client, "/jobs", 400, requester="0x1234")["detail"]
    assert "not an address" in get(client, "/jobs", 400, provider="bob")["detail"]
    get(client, "/jobs", 422, limit=0)
    get(client, "/jobs", 422, limit=501)
    get(client, "/jobs", 422, offset=-1)


# ---------------------------------------------------------------------- providers


def test_every_provider_equals_the_chain(world: World, client: httpx.Client) -> None:
    m = world.market
    listed = get(client, "/providers")
    addresses = sorted(p.address for p in world.cast.providers.values())
    assert [p["address"] for p in listed] == addresses
    for entry in listed:
        rec = m.provider(entry["address"])
        one = get(client, f"/providers/{entry['address'].lower()}")
        assert one == entry
        assert entry["registered"] is rec.registered is True
        assert (entry["stake"], entry["locked"], entry["unbonding"]) == (
            str(rec.stake),
            str(rec.locked),
            str(rec.unbonding),
        )
        assert entry["free_stake"] == str(max(rec.free_stake, 0))
        assert entry["unbond_at"] == rec.unbond_at
        assert (entry["jobs_done"], entry["jobs_slashed"]) == (rec.jobs_done, rec.jobs_slashed)
        assert (entry["price_per_unit"], entry["vram_gib"], entry["gpu_model"]) == (
            str(rec.price_per_unit),
            rec.vram_gib,
            rec.gpu_model,
        )
        assert entry["profile_mask"] == str(rec.profile_mask)
        assert (entry["min_exec_window"], entry["max_units"]) == (
            rec.min_exec_window,
            rec.max_units,
        )
        assert [p["id"] for p in entry["profiles"]] == [
            i for i in range(256) if rec.profile_mask >> i & 1
        ]
        assert all(p["descriptor"] is not None for p in entry["profiles"])
        # Nobody withdrew: what the Credited events add up to is what the market holds.
        assert entry["credited"] == str(m.credits(entry["address"]))
    by_name = {world.cast.name(p["address"]): p for p in listed}
    # Something happened to the providers: stakes slashed, collateral locked, credits paid.
    assert any(p["jobs_slashed"] for p in listed) and any(p["jobs_done"] for p in listed)
    assert int(by_name["alice"]["locked"]) > 0
    assert any(int(p["credited"]) > 0 for p in listed)
    # Liveness from the book: alice heartbeated 5 s before "now", the others never did.
    assert (by_name["alice"]["last_heartbeat"], by_name["alice"]["live"]) == (NOW - 5, True)
    assert (by_name["bob"]["last_heartbeat"], by_name["bob"]["live"]) == (None, False)


def test_provider_errors(world: World, client: httpx.Client) -> None:
    assert "not an address" in get(client, "/providers/0xnothex", 400)["detail"]
    bad_checksum = world.cast.providers["alice"].address.swapcase().replace("0X", "0x")
    if bad_checksum != bad_checksum.lower():
        get(client, f"/providers/{bad_checksum}", 400)
    assert "no provider" in get(client, f"/providers/0x{'12' * 20}", 404)["detail"]
    # The built-in liveness route is not shadowed by /providers/{address}.
    assert "providers" in get(client, "/providers/liveness")


# ---------------------------------------------------------------------- status


def test_status_is_the_checkpoint(world: World, client: httpx.Client) -> None:
    status = get(client, "/status")
    checkpoint = world.store.checkpoint(world.cast.deployment.chain_id)
    assert checkpoint is not None
    assert status["chain_id"] == world.cast.deployment.chain_id
    assert status["market"] == world.cast.deployment.market
    assert status["block_number"] == checkpoint.block_number == world.w3.eth.block_number
    block = world.w3.eth.get_block(checkpoint.block_number)
    assert status["block_hash"] == "0x" + bytes(block["hash"]).hex()
    m = world.market
    truth: dict[str, int] = {s.name.lower(): 0 for s in JobState if s is not JobState.NONE}
    for i in range(1, m.job_count() + 1):
        truth[m.job(i).state.name.lower()] += 1
    assert status["jobs_by_state"] == truth
    assert status["jobs"] == m.job_count()
    assert status["providers"] == len(world.cast.providers)


def test_empty_store(tmp_path: Path) -> None:
    """Before the listener bound the store: nothing, and no errors."""
    store = Store(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    app = create_app(ApiSettings(artifact_root=tmp_path / "a"), routers=[chain_router(store)])
    transport = httpx.ASGITransport(app=app)

    async def fetch() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            return [await c.get(p) for p in ("/status", "/jobs", "/providers", "/jobs/1")]

    status, jobs, providers, job = asyncio.run(fetch())
    assert status.json()["block_number"] is None and status.json()["jobs"] == 0
    assert jobs.json() == {"total": 0, "limit": 50, "offset": 0, "jobs": []}
    assert providers.json() == []
    assert job.status_code == 404
    store.close()


def test_why_a_reopened_job_waits_counts_its_no_show_out(anvil: Anvil, tmp_path: Path) -> None:
    """The contract bars a reopened job's no-show from it: the API's explanation must too."""
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 5}))
    with reverted(w3):
        cast = scenarios.setup(w3, funded_account(w3))
        alice = cast.providers["alice"]
        job = cast.requester.create_job(_request(units=3))
        cast.matcher.assign(job, [alice.address])
        advance(w3, cast.requester.job(job).exec_window + 1)
        cast.keeper.expire(job)  # alice never committed: slashed, the job reopens
        assert cast.owner.state(job) is JobState.OPEN
        store = Store(f"sqlite:///{tmp_path / 'relayer.sqlite3'}")
        Listener(w3, cast.deployment, store, confirmations=0).poll_once()
        book = MemoryLivenessBook()
        now = int(w3.eth.get_block("latest")["timestamp"])
        book.record(
            alice.address,
            Heartbeat(
                provider=alice.address,
                chain_id=cast.deployment.chain_id,
                market=cast.deployment.market,
                timestamp=now,
                load=0,
                capacity=1,
                profiles=(0,),
            ),
        )
        router = chain_router(store, book, heartbeat_interval=INTERVAL, clock=lambda: now)
        app = create_app(ApiSettings(artifact_root=tmp_path / "artifacts"), routers=[router])
        url, server, thread = serve(app)
        try:
            waiting = get(httpx.Client(base_url=url, timeout=10), f"/jobs/{job}")["waiting"]
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            store.close()
    # alice is the only live provider, and the contract will not take her again for this job.
    assert waiting["eligible"] == 0 and waiting["needed"] == 1, waiting
