"""A provider on its own host: its agent, its Celery worker and its Redis share nothing with the
relayer but the chain's RPC and the relayer's HTTP API.

The devnet brings up Anvil, the relayer, its own Redis and two providers of its own (on that
Redis), so a job of three replicas (no audit draw) always seats the separated one. It gets a
working directory of its own (its HOME, its copy of the deployment file, its SQLite ledger) and a
redis-server of its own on its own port, and runs `depin provider run` and `depin provider
worker` there with only DEPIN_PROVIDER_* settings. It registers, heartbeats, is assigned an
embed job with the devnet's two, computes it, commits and is paid; the job settles, the
requester decrypts and verifies the separated provider's result, tokens are conserved to the
wei, and the separated provider's task and result are in its Redis, not in the devnet's.

It runs twice: with its Redis as broker and result backend, and with a RabbitMQ server of its
own as the broker and its Redis as the result backend (DEPIN_PROVIDER_BROKER_URL=amqp://...,
DEPIN_PROVIDER_RESULT_BACKEND_URL=redis://...). The second needs Debian's `rabbitmq-server`
package (`apt-get install -y rabbitmq-server`) and is skipped without it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from marketplace.devnet import processes
from marketplace.devnet.anvil import free_port, funded_account
from marketplace.devnet.batch import SENTENCES
from marketplace.devnet.books import conservation, read_books
from marketplace.devnet.manager import (
    PRICE_PER_UNIT,
    PROVIDER_MAX_UNITS,
    PROVIDER_MIN_EXEC_WINDOW,
    PROVIDER_STAKE,
    Devnet,
    DevnetConfig,
)
from marketplace.index.schema import TERMINAL_STATES
from marketplace.protocol.client import JobState, ProviderTerms
from marketplace.requester.inputs import JobDraft
from marketplace.requester.sdk import Requester

pytestmark = pytest.mark.integration

#: Where Debian's package puts the server's own start script (not the root-only wrapper).
RABBITMQ = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
#: Bound of the provider's start (imports, the model's preload) and of the job's run.
READY_SECONDS = 120.0
JOB_SECONDS = 120.0


class Host:
    """The provider's machine: a directory, a redis-server, and the processes started there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True)
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.procs: list[subprocess.Popen[bytes]] = []
        #: The Erlang port mapper RabbitMQ starts as a daemon (its own port), if any.
        self.epmd_port: int | None = None
        self.logs: list[Path] = []

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = self.root / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.procs.append(
                subprocess.Popen(
                    command,
                    cwd=self.root,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def start_redis(self) -> None:
        (self.root / "redis").mkdir()
        command = [
            processes.redis_binary(),
            "--port", str(self.redis_port),
            "--bind", "127.0.0.1",
            "--dir", str(self.root / "redis"),
            "--save", "",
        ]  # fmt: skip
        self.spawn("redis", command, self.env({}))
        client = redis.Redis.from_url(self.redis_url, socket_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the provider's redis-server did not start\n{self.tails()}")
                time.sleep(0.1)
        client.close()

    def start_rabbitmq(self) -> str:
        """A RabbitMQ node of this host's own (its directories, ports and Erlang cookie under
        the host's directory); returns its AMQP URL once it accepts connections."""
        base = self.root / "rabbitmq"
        base.mkdir()
        (base / "rabbitmq.conf").write_text("loopback_users = none\n")
        port = free_port()
        self.epmd_port = free_port()
        env = self.env(
            {
                "ERL_EPMD_PORT": str(self.epmd_port),
                "RABBITMQ_NODENAME": f"depin{port}@localhost",
                "RABBITMQ_NODE_PORT": str(port),
                "RABBITMQ_DIST_PORT": str(free_port()),
                "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(base / "log"),
                "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "plugins"),
                "RABBITMQ_ENABLED_PLUGINS": "",
            }
        )
        self.spawn("rabbitmq", [str(RABBITMQ)], env)
        url = f"amqp://guest:guest@127.0.0.1:{port}//"
        deadline = time.monotonic() + 60
        while not _amqp_answers(port):
            if time.monotonic() > deadline:
                pytest.fail(f"the provider's RabbitMQ did not start\n{self.tails()}")
            time.sleep(0.5)
        return url

    def env(self, settings: dict[str, str]) -> dict[str, str]:
        """The environment of a process on this host: nothing of the test's DEPIN_* settings,
        its own HOME and data directory (so every default path, the ledger's included, is
        under it)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPIN_")}
        home = {"HOME": str(self.home), "XDG_DATA_HOME": str(self.home / ".local" / "share")}
        return {**env, **home, **settings}

    def tails(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
            for log in self.logs
            if log.exists()
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self.epmd_port is not None:
            epmd = shutil.which("epmd") or next(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))
            subprocess.run(
                [str(epmd), "-port", str(self.epmd_port), "-kill"],
                capture_output=True,
                timeout=10,
                check=False,
            )


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    """Anvil, the relayer, the devnet's Redis and two providers on it."""
    net = Devnet.up(DevnetConfig(dir=tmp_path / "relayer-host", providers=2, fresh=True))
    try:
        yield net
    finally:
        net.down()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    machine = Host(tmp_path / "provider-host")
    try:
        yield machine
    finally:
        machine.stop()


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_a_provider_on_its_own_host_runs_a_job_to_settlement(
    devnet: Devnet, host: Host, broker: str
) -> None:
    if broker == "amqp" and not RABBITMQ.exists():
        pytest.skip(f"no RabbitMQ ({RABBITMQ}): apt-get install -y rabbitmq-server")
    owner = devnet.owner()
    key = funded_account(devnet.w3)
    owner.mint(key.address, PROVIDER_STAKE)
    provider = owner.as_account(key)
    provider.register(
        ProviderTerms(
            profile_mask=0b1,
            price_per_unit=PRICE_PER_UNIT,
            gpu_model="cpu",
            min_exec_window=PROVIDER_MIN_EXEC_WINDOW,
            max_units=PROVIDER_MAX_UNITS,
        )
    )
    provider.stake(PROVIDER_STAKE)
    # What the operator copies to the provider's host: the deployment file, nothing else.
    deployment_file = host.root / "deployment.json"
    shutil.copy(devnet.deployment_file, deployment_file)
    host.start_redis()
    broker_url = host.start_rabbitmq() if broker == "amqp" else host.redis_url
    settings = {
        "DEPIN_PROVIDER_RPC_URL": devnet.state.rpc_url,
        "DEPIN_PROVIDER_DEPLOYMENT_FILE": str(deployment_file),
        "DEPIN_PROVIDER_PRIVATE_KEY": "0x" + key.key.hex(),
        "DEPIN_PROVIDER_RELAYER_URL": devnet.api_url,
        "DEPIN_PROVIDER_BROKER_URL": broker_url,
        "DEPIN_PROVIDER_CONFIRMATIONS": "0",
        "DEPIN_PROVIDER_POLL_INTERVAL": "0.25",
        "DEPIN_PROVIDER_HEARTBEAT_INTERVAL": "2",
        "DEPIN_PROVIDER_TASK_TIME_LIMIT": "300",
        "DEPIN_PROVIDER_VISIBILITY_TIMEOUT": "600",
    }
    if broker == "amqp":
        settings["DEPIN_PROVIDER_RESULT_BACKEND_URL"] = host.redis_url
    cli = [sys.executable, "-m", "marketplace.cli.main", "provider"]
    host.spawn("agent", [*cli, "run"], host.env(settings))
    host.spawn("worker", [*cli, "worker", "--concurrency", "1"], host.env(settings))

    account = devnet.requester_account()
    providers = [key.address, *devnet.provider_addresses().values()]
    holders = [account.address, *providers, devnet.state.deployer["address"], devnet.state.matcher]
    opening = read_books(owner, holders, providers)
    deadline = time.monotonic() + READY_SECONDS
    while not _live(devnet, key.address):
        if time.monotonic() > deadline:
            pytest.fail(f"the provider never heartbeated to the relayer\n{host.tails()}")
        time.sleep(0.5)

    with Requester(devnet.w3, devnet.deployment, account, devnet.api_url) as requester:
        draft = JobDraft(
            kind="embed", max_price_per_unit=PRICE_PER_UNIT, sentences=SENTENCES[:4], replicas=3
        )
        (job_id,) = requester.submit_many([draft])
        deadline = time.monotonic() + JOB_SECONDS
        while owner.state(job_id) not in TERMINAL_STATES:
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} is {owner.state(job_id)}\n{host.tails()}")
            time.sleep(0.5)
        assert owner.state(job_id) == JobState.SETTLED, host.tails()
        seated = {p.provider for p in owner.participants(job_id)}
        assert seated == set(providers), host.tails()
        result = requester.result(job_id)
        assert result.failure == "" and result.outputs

    closing = read_books(owner, holders, providers)
    books = conservation(opening, closing)
    assert books.ok, books
    assert books.imbalance == 0
    # The separated provider was paid for the job.
    mine_before, mine_after = opening.holdings[key.address], closing.holdings[key.address]
    assert mine_after.total > mine_before.total
    assert mine_after.jobs_done == mine_before.jobs_done + 1
    # Its ledger is in its own data directory.
    assert list(host.home.rglob(f"provider-{key.address.lower()}.sqlite3")), host.tails()
    mine = redis.Redis.from_url(host.redis_url)
    theirs = redis.Redis.from_url(str(devnet.state.redis_url))
    try:
        # Task ids name the provider: its results are in its Redis, none in the devnet's.
        pattern = f"celery-task-meta-*{key.address.lower()}*"
        assert mine.keys(pattern), "no result in the provider's Redis"
        assert theirs.keys(pattern) == []
        assert theirs.keys("celery-task-meta-*"), "the devnet's providers stored nothing"
    finally:
        mine.close()
        theirs.close()


def _amqp_answers(port: int) -> bool:
    """Whether an AMQP 0-9-1 server on `port` answers the protocol header (with a method
    frame, type 1: Connection.Start)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(b"AMQP\x00\x00\x09\x01")
            return conn.recv(1) == b"\x01"
    except OSError:
        return False


def _live(devnet: Devnet, address: str) -> bool:
    import httpx

    try:
        book = httpx.get(f"{devnet.api_url}/providers/liveness", timeout=5).json()
    except httpx.HTTPError:
        return False
    return any(p["provider"] == address and p["live"] for p in book["providers"])
