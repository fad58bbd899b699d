"""Two `depin relayer run` processes on one PostgreSQL database against Anvil: one leads, the
other stands by serving the API from the shared index; the leader is killed with SIGKILL as
soon as an assignment has landed and before its index has it, the standby leads within seconds,
assigns the jobs that come next, keeps every job to its end, and the chain shows one
ProviderAssigned per seat and exact token conservation.

Heartbeats are required, and each provider sends one, to the leader only, before any job: the
standby knows them live from the shared database (its own API shows them), and assigns right
after it takes the lead, long before any provider would heartbeat again."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from web3 import Web3

from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, advance, free_port, funded_account
from marketplace.devnet.books import conservation, read_books
from marketplace.index.schema import TERMINAL_STATES
from marketplace.protocol.client import JobRequest, JobState, Market
from marketplace.protocol.heartbeat import sign_heartbeat
from tests.conftest import reverted
from tests.pg_fixture import PostgresServer

pytestmark = pytest.mark.integration

#: How long the relayer processes may take to start (imports, schema, first step) on a busy
#: machine.
READY_SECONDS = 120.0
#: How long after the leader's death the standby must lead.
TAKEOVER_SECONDS = 30.0
#: Bound of every other wait.
WAIT_SECONDS = 30.0
#: Seconds between the providers' heartbeats: longer than the test, so the one heartbeat each
#: sends is all the relayers ever hear from them.
HEARTBEAT_INTERVAL = 300
#: How soon after taking the lead the standby must have assigned the jobs only it can assign.
ASSIGN_SECONDS = 30.0


def _request(tag: int) -> JobRequest:
    return JobRequest(
        spec_hash=hashlib.sha256(f"standby-job-{tag}".encode()).digest(),
        units=scenarios.UNITS,
        max_price_per_unit=scenarios.PRICE,
        replicas=3,  # no audit draw: the jobs settle on their reveals
    )


class RelayerProcess:
    """One `depin relayer run --json` process and its log."""

    def __init__(self, name: str, env: dict[str, str], tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"relayer-{name}.log"
        command = [sys.executable, "-m", "marketplace.cli.main", "relayer", "run", "--json"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                command,
                env={**env, "DEPIN_RELAYER_API_PORT": str(self.port)},
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def assigned(self) -> set[int]:
        """Jobs whose assignment this relayer saw land (its submitter's log lines)."""
        out: set[int] = set()
        for line in self.text().splitlines():
            found = re.search(r"assign landed for jobs \[([\d, ]*)\]", line)
            if found:
                out.update(int(j) for j in found.group(1).split(",") if j.strip())
        return out

    def leading(self) -> bool | None:
        """What the last lead event said (None before any)."""
        changes = [e["leading"] for e in self.events() if "leading" in e]
        return changes[-1] if changes else None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _until(what: str, done: Callable[[], bool], seconds: float, *logs: RelayerProcess) -> float:
    """Waits until `done()`; returns the seconds it took (fails with the logs after `seconds`)."""
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > seconds:
            tails = "\n".join(f"--- {r.log.name}\n{r.text()[-3000:]}" for r in logs)
            pytest.fail(f"{what} within {seconds} s\n{tails}")
        time.sleep(0.1)
    return time.monotonic() - start


def _heartbeat(cast: scenarios.Cast, provider: Market, url: str) -> bool:
    """Whether the relayer at `url` accepts a fresh heartbeat of `provider` (it refuses one
    until its index has the provider's registration)."""
    assert provider.signer is not None
    hb = sign_heartbeat(
        provider.signer.account,
        chain_id=cast.deployment.chain_id,
        market=cast.deployment.market,
        timestamp=int(time.time()),
        load=0,
        capacity=4,
        profiles=[0],
    )
    try:
        r = httpx.post(f"{url}/heartbeats", content=hb.model_dump_json(), timeout=5)
    except httpx.TransportError:
        return False
    if r.status_code == 409:  # one already accepted this second
        time.sleep(1.0)
    return r.status_code == 200


def _live(relayer: RelayerProcess) -> set[str]:
    try:
        book = httpx.get(f"{relayer.url}/providers/liveness", timeout=5).json()
    except httpx.TransportError:
        return set()
    return {p["provider"] for p in book["providers"] if p["live"]}


def _served(relayer: RelayerProcess) -> dict[int, str]:
    try:
        page = httpx.get(f"{relayer.url}/jobs", params={"limit": 500}, timeout=5).json()
    except httpx.TransportError:
        return {}
    return {j["job_id"]: j["state"] for j in page["jobs"]}


@pytest.fixture
def cast(anvil: Anvil) -> Iterator[scenarios.Cast]:
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 10}))
    with reverted(w3):
        cast = scenarios.setup(w3, funded_account(w3), providers=6)
        scenarios.set_audit_rate(cast, 0)
        yield cast


def test_the_standby_takes_over_from_a_killed_leader(
    cast: scenarios.Cast, postgres: PostgresServer, tmp_path: Path
) -> None:
    deployment_file = tmp_path / "deployment.json"
    cast.deployment.write(deployment_file)
    assert cast.matcher.signer is not None
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DEPIN_RELAYER_", "DEPIN_API_"))
    }
    env.update(
        DEPIN_RELAYER_RPC_URL=str(cast.w3.provider.endpoint_uri),  # type: ignore[attr-defined]
        DEPIN_RELAYER_DEPLOYMENT_FILE=str(deployment_file),
        DEPIN_RELAYER_PRIVATE_KEY="0x" + bytes(cast.matcher.signer.account.key).hex(),
        DEPIN_RELAYER_DB_URL=postgres.new_database("standby"),
        DEPIN_RELAYER_CONFIRMATIONS="0",
        DEPIN_RELAYER_POLL_INTERVAL="0.2",
        DEPIN_RELAYER_REQUIRE_HEARTBEATS="true",
        DEPIN_RELAYER_HEARTBEAT_INTERVAL=str(HEARTBEAT_INTERVAL),
        DEPIN_RELAYER_ARTIFACT_ROOT=str(tmp_path / "artifacts"),
    )
    holders = [
        cast.requester.address,
        *(p.address for p in cast.providers.values()),
        cast.owner.address,
        cast.matcher.address,
        cast.keeper.address,
    ]
    providers = [p.address for p in cast.providers.values()]
    opening = read_books(cast.owner, holders, providers)
    first = cast.w3.eth.block_number

    # Both start at once on a new database: its schema is made once, and one of them leads.
    both = [RelayerProcess("a", env, tmp_path), RelayerProcess("b", env, tmp_path)]
    try:
        _until(
            "both relayers answer whether they lead",
            lambda: all(r.leading() is not None for r in both),
            READY_SECONDS,
            *both,
        )
        assert sorted(r.leading() is True for r in both) == [False, True], "not one leader"
        leader, b = both if both[0].leading() else both[::-1]

        # One heartbeat per provider, to the leader only; the standby reads them from the
        # database they share.
        for provider in cast.providers.values():
            _until(
                f"the leader accepts a heartbeat of {provider.address}",
                functools.partial(_heartbeat, cast, provider, leader.url),
                WAIT_SECONDS,
                *both,
            )
        _until(
            "the standby's API shows every provider live",
            lambda: _live(b) == set(providers),
            WAIT_SECONDS,
            *both,
        )

        # The leader assigns; the standby's API serves the index the leader writes.
        early = cast.requester.create_jobs([_request(i) for i in range(2)])
        _until(
            "the standby's API shows the leader's assignments",
            lambda: all(_served(b).get(j) == "assigned" for j in early),
            WAIT_SECONDS,
            *both,
        )

        # New jobs; the leader dies as soon as their assignment has landed, before its index
        # has applied it (its next step): the standby finds them in the chain, not in the index.
        late = cast.requester.create_jobs([_request(10 + i) for i in range(3)])
        _until(
            "the leader assigns the new jobs",
            lambda: leader.assigned() >= set(late),
            WAIT_SECONDS,
            *both,
        )
        leader.kill()
        taken = _until("the standby leads", lambda: b.leading() is True, TAKEOVER_SECONDS, b)
        # Jobs only the new leader can assign.
        after = cast.requester.create_jobs([_request(20 + i) for i in range(2)])
        jobs = early + late + after
        assigning = _until(
            "every job assigned, without a heartbeat since the takeover",
            lambda: all(cast.owner.state(j) == JobState.ASSIGNED for j in jobs),
            ASSIGN_SECONDS,
            b,
        )

        by_address = {p.address: p for p in cast.providers.values()}
        for j in jobs:
            for part in cast.owner.participants(j):
                by_address[part.provider].commit(j, scenarios.GOOD)
        for j in jobs:
            for part in cast.owner.participants(j):
                by_address[part.provider].reveal(j, scenarios.GOOD)
        advance(cast.w3, cast.owner.params().challenge_window + 1)
        _until(
            "every job closed by the new leader",
            lambda: all(cast.owner.state(j) in TERMINAL_STATES for j in jobs),
            WAIT_SECONDS,
            b,
        )
        _until(
            "the new leader's index shows every job settled",
            lambda: all(_served(b).get(j) == "settled" for j in jobs),
            WAIT_SECONDS,
            b,
        )
        assert b.proc.poll() is None, b.text()[-3000:]
    finally:
        for relayer in both:
            relayer.kill()

    assert taken < TAKEOVER_SECONDS
    print(
        f"standby led {taken:.2f} s after the leader was killed and assigned the new jobs "
        f"{assigning:.2f} s later (heartbeat interval {HEARTBEAT_INTERVAL} s)"
    )
    assert b.assigned() >= set(after)
    assert {cast.owner.state(j) for j in jobs} == {JobState.SETTLED}
    assigned = cast.owner.event_args("ProviderAssigned", from_block=first)
    seats = Counter((a["jobId"], a["index"]) for a in assigned)
    assert seats == {(j, i): 1 for j in jobs for i in range(3)}, "a seat assigned twice"
    closing = read_books(cast.owner, holders, providers)
    books = conservation(opening, closing)
    assert books.ok, books
    assert books.imbalance == 0
