"""Crash safety with real processes: a worker process killed mid-task, and an agent killed and
restarted, still give exactly one commit per job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis

from marketplace.index.store import Store
from marketplace.protocol.client import JobState
from provider.agent import Agent
from provider.ledger import Ledger
from tests.provider.conftest import ROOT, World, direct_digest

pytestmark = pytest.mark.integration


def test_worker_killed_mid_task_is_redelivered_and_committed_once(world: World) -> None:
    worker = world.start_worker()
    alice = world.agent("alice")
    provider = world.cast.providers["alice"].address
    job = world.submit_matmul(1024, seed=11, iterations=150)  # seconds of work on a CPU

    def started() -> bool:
        duties = alice.ledger.all()
        return bool(duties) and alice.celery.AsyncResult(duties[0].task_id).state == "STARTED"

    world.drive(started, what="the task to start")
    children = worker.children()
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)  # the pool process dies as under the OOM killer

    world.drive(lambda: world.state(job) == JobState.COMMITTED, what="the redelivered commit")
    assert world.commits(job) == [provider]
    duty = alice.ledger.all()[0]
    assert duty.sends == 1  # redelivered by the broker, not re-sent by the agent
    deliveries = redis.Redis.from_url(world.redis_url).get(f"depin:deliveries:{duty.task_id}")
    assert deliveries is not None and int(deliveries) == 2
    assert "WorkerLostError" in worker.log.read_text(errors="replace")
    assert world.result_digest(job, provider) == direct_digest(1024, 11, 150)


def _start_agent(world: World) -> subprocess.Popen[bytes]:
    log = (world.base / "agent.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "provider.agent"],
        cwd=ROOT,
        env=world.env("alice"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_agent_killed_and_restarted_misses_and_doubles_no_commit(world: World) -> None:
    world.start_worker()
    provider = world.cast.providers["alice"].address
    ledger = Ledger(world.settings("alice").database_url(""))
    jobs = [world.submit_matmul(256, seed=s, iterations=20) for s in range(4)]

    agent = _start_agent(world)
    world.drive(lambda: bool(ledger.all()), agents=[], what="the first duty")
    agent.send_signal(signal.SIGKILL)  # mid-cycle: tasks sent, nothing committed yet
    agent.wait()

    agent = _start_agent(world)
    try:
        world.drive(lambda: bool(world.commits(jobs[0])), agents=[], what="a first commit")
        agent.send_signal(signal.SIGKILL)  # again, while commits are landing
        agent.wait()
        agent = _start_agent(world)
        world.drive(
            lambda: all(world.state(j) == JobState.COMMITTED for j in jobs),
            agents=[],
            what="every commit",
        )
        # A clean stop once it is running: SIGTERM ends the cycle and exits 0.
        world.drive(
            lambda: (world.base / "agent.log").read_text().count("started (honest)") == 3,
            agents=[],
            what="the third agent to start",
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
    assert agent.returncode == 0
    for job in jobs:
        assert world.commits(job) == [provider]
    assert sorted(d.job_id for d in ledger.all()) == jobs
    ledger.close()


def test_commit_landed_before_the_record_is_adopted_not_resent(world: World) -> None:
    world.start_worker()
    alice = world.agent("alice")
    provider = world.cast.providers["alice"].address
    job = world.submit_matmul(64, seed=2)
    world.drive(lambda: world.state(job) == JobState.COMMITTED, what="the commit")
    duty = alice.ledger.all()[0]
    # The agent dies after the commit transaction landed but before it wrote that down.
    alice.ledger.update(duty.task_id, status="computed", commit_tx=None)
    alice.close()

    url = world.settings("alice").database_url("")
    restarted = Agent(
        world.settings("alice"),
        market=world.cast.providers["alice"],
        store=Store(url),
        ledger=Ledger(url),
    )
    world.agents["alice"] = restarted
    restarted.step()
    assert restarted.ledger.get(duty.task_id).status == "committed"  # type: ignore[union-attr]
    assert world.commits(job) == [provider]
