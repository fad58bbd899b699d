"""Real processes for the provider tests: Anvil, a Redis server, the relayer's API (uvicorn in a
thread) and loop, Celery worker processes, and agents driven step by step.

The relayer matches without heartbeats here (the agents still send them; the relayer-side
heartbeat rules have their own tests), so each test controls when matching happens.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
import uvicorn
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.api.app import create_app
from marketplace.api.listen import listen
from marketplace.api.settings import ApiSettings
from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, free_port, funded_account
from marketplace.devnet.processes import redis_binary
from marketplace.index.store import Store
from marketplace.protocol.artifact_client import ArtifactClient
from marketplace.protocol.client import JobRequest, JobState
from marketplace.protocol.deployment import MarketParams
from marketplace.protocol.results import (
    ResultPayload,
    decrypt_result,
    public_key_hex,
    verify_result,
)
from marketplace.protocol.spec import JobSpec
from marketplace.relayer.service import Relayer
from marketplace.relayer.settings import RelayerSettings
from provider.agent import Agent
from provider.ledger import Ledger
from provider.settings import Behavior, ProviderSettings
from provider.worker import make_celery
from tests.conftest import reverted, serve

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "torch-2.13.0/cpu/float32/deterministic"
#: Short windows so that tests only advance the clock a little. The audit rate has a floor
#: (auditBps x (1 + collateralMultiple) >= 10000), so `World.drive` keeps single-replica jobs
#: unaudited by running their draw with a clear seed (`scenarios.draw_clear`) unless a test sets
#: `world.audits = True`.
PARAMS = MarketParams(
    challenge_window=30,
    verifier_assign_window=120,
    verifier_exec_window=600,
    reveal_window=120,
    min_exec_window=10,
    collateral_multiple=10,
    audit_bps=910,
)
STEP_TIMEOUT = 300.0


@dataclass
class RedisServer:
    """A redis-server without persistence: a restart comes back empty, as a crashed server
    without its data file."""

    url: str
    proc: subprocess.Popen[bytes]
    port: int = 0
    base: Path = Path()

    @classmethod
    def start_new(cls, base: Path) -> RedisServer:
        server = cls("", None, free_port(), base)  # type: ignore[arg-type]
        server.start()
        return server

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.base),
            ],
            stdout=(self.base / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "no redis"
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        """SIGKILL: everything it held is gone."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer.start_new(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server for one test (see `world`)."""
    base = tmp_path / "redis"
    base.mkdir()
    server = RedisServer.start_new(base)
    yield server
    if server.proc.poll() is None:
        server.stop()


@dataclass
class Worker:
    """A `python -m provider.worker` process (prefork pool, concurrency 1)."""

    proc: subprocess.Popen[bytes]
    log: Path

    def children(self) -> list[int]:
        """The pool processes (the worker's direct children)."""
        try:
            return [child.pid for child in psutil.Process(self.proc.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def wait_warm(self, timeout: float = 300.0) -> None:
        """Waits until the worker consumes and its pool process has preloaded torch and the
        embedding model (a minute or more on a busy machine), so a test's short deadlines
        measure the fault, not the start."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log.read_text(errors="replace")
            if " ready." in text and (
                "preloaded torch and the embedding model" in text
                or "preloading the embedding model failed" in text
            ):
                return
            assert self.proc.poll() is None, f"the worker exited:\n{text[-3000:]}"
            assert time.monotonic() < deadline, f"the worker did not warm up:\n{text[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@dataclass
class World:
    """One deployment with everything a provider needs around it."""

    base: Path
    w3: Web3
    cast: scenarios.Cast
    api_url: str
    redis_url: str
    queue: str
    relayer: Relayer
    requester_key: LocalAccount
    api: _Api | None = None
    redis: RedisServer | None = None
    workers: list[Worker] = field(default_factory=list)
    agents: dict[str, Agent] = field(default_factory=dict)
    #: Whether single-replica jobs take their random audit draw; False runs each draw with a
    #: seed that clears the job as soon as it is committed.
    audits: bool = False

    def stop_api(self) -> None:
        """Takes the relayer's API down (artifacts, heartbeats, result notices)."""
        assert self.api is not None
        self.api.stop()

    def start_api(self) -> None:
        """Serves the relayer's API again on the same address."""
        assert self.api is not None
        self.api.start()

    def settings(self, name: str, behavior: Behavior = "honest", **extra: Any) -> ProviderSettings:
        provider = self.cast.providers[name]
        assert provider.signer is not None
        values: dict[str, Any] = {
            "rpc_url": str(self.w3.provider.endpoint_uri),  # type: ignore[attr-defined]
            "deployment_file": self.base / "deployment.json",
            "private_key": "0x" + bytes(provider.signer.account.key).hex(),
            "relayer_url": self.api_url,
            "broker_url": self.redis_url,
            "queue": self.queue,
            "db_url": f"sqlite:///{self.base / f'agent-{name}.sqlite3'}",
            "confirmations": 0,
            "poll_interval": 0.2,
            "heartbeat_interval": 5,
            "behavior": behavior,
            "task_time_limit": 300,
            "visibility_timeout": 600,
        }
        values.update(extra)
        return ProviderSettings(**values)

    def env(self, name: str, **extra: Any) -> dict[str, str]:
        s = self.settings(name, **extra)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPIN_")}
        for key, value in s.model_dump().items():
            if value is None:
                continue
            if hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            env[f"DEPIN_PROVIDER_{key.upper()}"] = str(value)
        return env

    def start_worker(self, name: str = "alice", **extra: Any) -> Worker:
        log = self.base / f"worker-{len(self.workers)}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "provider.worker"],
            cwd=ROOT,
            env=self.env(name, **extra),
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = Worker(proc, log)
        self.workers.append(worker)
        return worker

    def agent(self, name: str, behavior: Behavior = "honest", **extra: Any) -> Agent:
        settings = self.settings(name, behavior, **extra)
        url = settings.database_url("")
        agent = Agent(
            settings,
            market=self.cast.providers[name],
            store=Store(url),
            ledger=Ledger(url),
            celery=make_celery(settings),
        )
        self.agents[name] = agent
        return agent

    # ---------------------------------------------------------------- requester side

    def artifacts(self) -> ArtifactClient:
        return ArtifactClient(self.api_url)

    def submit_matmul(
        self,
        n: int,
        seed: int,
        *,
        replicas: int = 1,
        iterations: int = 1,
        exec_window: int = 3_600,
    ) -> int:
        return self.submit(
            "matmul",
            "",
            (),
            {"n": n, "seed": seed, "iterations": iterations},
            replicas=replicas,
            exec_window=exec_window,
        )

    def submit(
        self,
        kind: str,
        model: str,
        inputs: tuple[bytes, ...],
        parameters: dict[str, Any],
        *,
        replicas: int = 1,
        exec_window: int = 3_600,
    ) -> int:
        """Uploads `inputs` and the spec, then creates the job as the requester."""
        with self.artifacts() as store:
            hashes = tuple(store.put(data) for data in inputs)
            spec = JobSpec(
                version=1,
                kind=kind,
                model=model,
                inputs=hashes,
                parameters=parameters,
                profile=PROFILE,
                units=1,
                requester_public_key=public_key_hex(self.requester_key),
            )
            store.put(spec.canonical_json())
        return self.cast.requester.create_job(
            JobRequest(
                spec_hash=spec.spec_hash(),
                units=scenarios.UNITS,
                max_price_per_unit=scenarios.PRICE,
                replicas=replicas,
                exec_window=exec_window,
            )
        )

    def drive(
        self,
        until: Callable[[], bool],
        *,
        agents: list[Agent] | None = None,
        timeout: float = STEP_TIMEOUT,
        what: str = "the condition",
    ) -> None:
        """Steps the relayer and the agents until `until()` holds, mining a block per round as
        a chain with a block time would (audit draws need a block after the commit)."""
        deadline = time.monotonic() + timeout
        agents = list(self.agents.values()) if agents is None else agents
        while not until():
            if time.monotonic() > deadline:
                logs = "\n".join(w.log.read_text(errors="replace")[-3000:] for w in self.workers)
                duties = {
                    name: [(d.job_id, d.status, d.sends, d.note) for d in a.ledger.all()]
                    for name, a in self.agents.items()
                }
                raise AssertionError(
                    f"timed out waiting for {what}; duties: {duties}; worker logs:\n{logs}"
                )
            self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            self.relayer.step()
            for agent in agents:
                agent.step()
            if not self.audits:
                self.clear_draws()
            time.sleep(0.1)

    def clear_draws(self) -> None:
        """Runs the audit draw of every committed single-replica job with a seed that does not
        select it (before the keeper draws), so the job settles unaudited."""
        keeper = self.cast.keeper
        for job_id in range(1, keeper.job_count() + 1):
            job = keeper.job(job_id)
            if job.state == JobState.COMMITTED and not job.drawn_clear:
                scenarios.draw_clear(keeper, job_id)

    def state(self, job_id: int) -> JobState:
        return self.cast.owner.state(job_id)

    def advance(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def result(self, job_id: int, provider: str) -> ResultPayload:
        """Downloads and decrypts `provider`'s announced result of `job_id`."""
        notices = httpx.get(f"{self.api_url}/jobs/{job_id}/results").json()["results"]
        notice = next(n for n in notices if n["provider"] == provider)
        with self.artifacts() as store:
            return decrypt_result(self.requester_key, store.get(notice["artifact"]))

    def result_digest(self, job_id: int, provider: str) -> bytes:
        """`result` verified against the provider's on-chain commitment; returns the digest."""
        payload = self.result(job_id, provider)
        participants = self.cast.owner.participants(job_id)
        commitment = next(p.commitment for p in participants if p.provider == provider)
        return verify_result(
            payload, job_id=job_id, provider=provider, commitment=commitment, profile=PROFILE
        )

    def commits(self, job_id: int) -> list[str]:
        """Providers of every ResultCommitted event of `job_id` (one per commit transaction)."""
        logs = self.cast.owner.market.events.ResultCommitted().get_logs(
            argument_filters={"jobId": job_id}, from_block=self.cast.deployment.block
        )
        return [str(e["args"]["provider"]) for e in logs]


@pytest.fixture
def world(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer, anvil: Anvil
) -> Iterator[World]:
    """A deployment with `@pytest.mark.providers(n)` registered providers (1 by default), so
    that the relayer can only match providers a test runs an agent for. A test that also asks
    for `private_redis` gets a world on that Redis server of its own, to kill and restart."""
    marker = request.node.get_closest_marker("providers")
    count = int(marker.args[0]) if marker is not None else 1
    redis_ = (
        request.getfixturevalue("private_redis")
        if "private_redis" in request.fixturenames
        else redis_server
    )
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 10}))
    # The deployment and all the test did on the chain are undone after everything that could
    # still send a transaction (agents, workers, the relayer) has stopped.
    with reverted(w3):
        cast = scenarios.setup(w3, funded_account(w3), params=PARAMS, providers=count)
        cast.deployment.write(tmp_path / "deployment.json")
        app = create_app(
            ApiSettings(
                artifact_root=tmp_path / "artifacts",
                deployment_file=tmp_path / "deployment.json",
            )
        )
        api = _Api(app)
        assert cast.matcher.signer is not None
        relayer = Relayer(
            RelayerSettings(
                rpc_url=anvil.url,
                deployment_file=tmp_path / "deployment.json",
                private_key="0x" + bytes(cast.matcher.signer.account.key).hex(),
                db_url=f"sqlite:///{tmp_path / 'relayer.sqlite3'}",
                confirmations=0,
                require_heartbeats=False,
            )
        )
        queue = "depin-test-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]
        requester_key: LocalAccount = Account.from_key(
            bytes(cast.requester.signer.account.key)  # type: ignore[union-attr]
        )
        world = World(
            tmp_path, w3, cast, api.url, redis_.url, queue, relayer, requester_key, api, redis_
        )
        try:
            yield world
        finally:
            for worker in world.workers:
                worker.stop()
            for agent in world.agents.values():
                agent.close()
            relayer.close()
            api.stop()


class _Api:
    """The relayer's API in a uvicorn thread that can be stopped and served again on the same
    address."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.url, self.server, self.thread = serve(app)
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def start(self) -> None:
        sock = listen("127.0.0.1", self.port)
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)


def direct_digest(n: int, seed: int, iterations: int = 1) -> bytes:
    """The digest of the same matmul run in this process."""
    from marketplace.protocol.digest import digest
    from provider.runtime.matmul import matmul

    return digest(PROFILE, matmul(n, seed, iterations))
