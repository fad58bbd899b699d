"""Dependency faults with real processes: the relayer down for longer than any count of retries,
Redis killed and restarted without its data, worker processes killed mid-task. Each time the
honest provider's job still settles, nobody is slashed, and lost tasks are sent again within
seconds (the recovery times are printed)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest
import redis

from marketplace.devnet import scenarios
from marketplace.protocol.client import JobState, ProviderTerms
from provider.agent import AgentReport
from tests.provider.conftest import PARAMS, RedisServer, World, direct_digest

pytestmark = pytest.mark.integration


def _alive(world: World, tid: str) -> bool:
    return bool(redis.Redis.from_url(world.redis_url).exists(f"depin:alive:{tid}"))


def _settle(world: World, job: int) -> None:
    # Settling an earlier job advances the clock past this one's challenge window too: it may
    # be Settled already by the time it is looked at.
    world.drive(
        lambda: world.state(job) in (JobState.COMMITTED, JobState.SETTLED), what="the commit"
    )
    if world.state(job) != JobState.SETTLED:
        world.advance(PARAMS.challenge_window + 1)
    world.drive(lambda: world.state(job) == JobState.SETTLED, what="settlement")


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage())


def test_relayer_down_longer_than_any_retry_count_is_waited_out(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    world.start_worker()
    alice = world.agent("alice", heartbeat_interval=1)
    provider = world.cast.providers["alice"].address
    job = world.submit_matmul(64, seed=21)  # artifacts uploaded; the relayer goes down now
    world.stop_api()
    world.drive(lambda: bool(alice.ledger.all()), what="the duty")
    tid = alice.ledger.all()[0].task_id
    world.drive(lambda: _alive(world, tid), what="the run to start")

    down = time.monotonic()
    while time.monotonic() - down < 40:  # the old budget gave the job up after ~14 s
        world.relayer.step()
        alice.step()
        world.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        time.sleep(0.2)
    assert world.state(job) == JobState.ASSIGNED
    assert alice.ledger.get(tid).status == "queued"  # type: ignore[union-attr]
    assert _alive(world, tid)  # still retrying, not given up
    world.start_api()
    back = time.monotonic()
    world.drive(lambda: world.state(job) == JobState.COMMITTED, what="the commit")
    print(f"\nrelayer down {back - down:.0f} s; committed {time.monotonic() - back:.1f} s after")

    _settle(world, job)
    # A notice the outage held back is posted once the relayer is back, even after settlement.
    world.drive(lambda: alice.ledger.get(tid).notice_posted, what="the result notice")  # type: ignore[union-attr]
    assert world.commits(job) == [provider]
    assert world.result_digest(job, provider) == direct_digest(64, 21)
    assert world.cast.owner.provider(provider).jobs_slashed == 0
    duty = alice.ledger.get(tid)
    assert duty is not None and (duty.status, duty.sends) == ("closed", 1)
    # One warning for the whole outage, and heartbeats backed off instead of one per cycle.
    assert _warnings(caplog, f"relayer {world.api_url} unavailable") == 1
    assert alice.relayer.count == 1
    worker_log = world.workers[0].log.read_text(errors="replace")
    assert worker_log.count("unavailable") == 1, worker_log[-3000:]


@pytest.mark.providers(2)
def test_relayer_down_past_the_deadline_releases_the_seat_instead_of_a_no_show(
    world: World,
) -> None:
    world.cast.providers["alice"].update_terms(  # the matcher's first choice
        ProviderTerms(profile_mask=0b1, price_per_unit=scenarios.PRICE // 2, gpu_model="cpu")
    )
    world.start_worker().wait_warm()  # the deadline is short: the fault, not the start, decides
    alice = world.agent("alice", run_margin=15)
    provider = world.cast.providers["alice"].address
    job = world.submit_matmul(64, seed=22, exec_window=40)
    world.stop_api()
    world.drive(lambda: world.state(job) == JobState.ASSIGNED, agents=[alice], what="assignment")
    (seat,) = world.cast.owner.participants(job)
    assert seat.provider == provider
    assigned = world.cast.owner.job(job)
    stake = world.cast.owner.provider(provider).stake
    world.drive(
        lambda: bool(alice.ledger.all()) and alice.ledger.all()[0].status == "released",
        agents=[alice],
        timeout=90,
        what="the release",
    )
    released = world.cast.owner.market.events.ProviderReleased().get_logs(
        argument_filters={"jobId": job}, from_block=world.cast.deployment.block
    )
    assert [str(e["args"]["provider"]) for e in released] == [provider]
    # The release fee (units x clearing price), not the no-show slash of the whole collateral.
    fee = int(released[0]["args"]["fee"])
    assert fee == assigned.pay and assigned.collateral == 10 * fee
    record = world.cast.owner.provider(provider)
    assert (record.stake, record.locked) == (stake - fee, 0)

    # The job goes to another provider, who computes and commits once the relayer is back.
    world.start_api()
    world.agent("bob")
    world.drive(lambda: world.state(job) == JobState.COMMITTED, what="the reassigned commit")
    assert world.commits(job) == [world.cast.providers["bob"].address]


def test_redis_restarted_without_its_data_the_queued_tasks_are_resent_in_seconds(
    world: World, private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    alice = world.agent("alice")
    provider = world.cast.providers["alice"].address
    jobs = [world.submit_matmul(64, seed=s) for s in (31, 32)]
    # No worker yet: the tasks wait in the queue when Redis dies.
    world.drive(lambda: len(alice.ledger.all()) == 2, what="both duties")
    queue = redis.Redis.from_url(world.redis_url).llen(world.queue)
    assert queue == 2

    private_redis.kill()
    for _ in range(10):  # the agent goes on (commits and reveals would too) while Redis is down
        alice.step()
        time.sleep(0.2)
    private_redis.start()  # empty: the queue and the results are gone
    restarted = time.monotonic()
    worker = world.start_worker()
    resent_at: dict[int, float] = {}
    while len(resent_at) < 2:
        assert time.monotonic() - restarted < 60, "the lost tasks were not sent again"
        report = alice.step()
        for job in report.resent + report.queued:
            resent_at.setdefault(job, time.monotonic() - restarted)
        world.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        time.sleep(0.2)
    print(f"\nRedis restarted empty: tasks sent again after {sorted(resent_at.values())} s")
    assert max(resent_at.values()) < 30  # not the 600 s resend_after
    worker.wait_warm()
    for job in jobs:
        _settle(world, job)
        assert world.commits(job) == [provider]
    assert [d.sends for d in alice.ledger.all()] == [2, 2]
    assert _warnings(caplog, "unavailable") == 1  # the Redis outage, once


def test_worker_pool_process_killed_mid_task_recovers_in_seconds(world: World) -> None:
    worker = world.start_worker()
    alice = world.agent("alice")
    provider = world.cast.providers["alice"].address
    job = world.submit_matmul(1024, seed=41, iterations=150)  # seconds of work on a CPU
    world.drive(
        lambda: bool(alice.ledger.all()) and _alive(world, alice.ledger.all()[0].task_id),
        what="the run to start",
    )
    (child,) = worker.children()
    os.kill(child, signal.SIGKILL)
    killed = time.monotonic()
    tid = alice.ledger.all()[0].task_id
    world.drive(lambda: _alive(world, tid) and worker.children() != [child], what="the second run")
    print(f"\npool process killed: run again after {time.monotonic() - killed:.1f} s")
    assert time.monotonic() - killed < 30
    _settle(world, job)
    assert world.commits(job) == [provider]
    assert alice.ledger.all()[0].sends == 1  # redelivered by the broker, not re-sent
    assert world.cast.owner.provider(provider).jobs_slashed == 0


def test_worker_main_process_killed_mid_task_the_agent_resends_in_seconds(world: World) -> None:
    worker = world.start_worker()
    alice = world.agent("alice")
    provider = world.cast.providers["alice"].address
    job = world.submit_matmul(1024, seed=42, iterations=150)
    world.drive(
        lambda: bool(alice.ledger.all()) and _alive(world, alice.ledger.all()[0].task_id),
        what="the run to start",
    )
    # The machine dies: main process and pool process at once. The task stays unacknowledged
    # in Redis until the visibility timeout (600 s here).
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()
    killed = time.monotonic()
    replacement = world.start_worker()
    resent = None
    while resent is None:
        assert time.monotonic() - killed < 60, "the lost task was not sent again"
        if alice.step().resent:
            resent = time.monotonic() - killed
        world.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        time.sleep(0.2)
    print(f"\nworker killed: task sent again after {resent:.1f} s")
    assert resent < 30
    replacement.wait_warm()
    _settle(world, job)
    assert world.commits(job) == [provider]
    assert alice.ledger.all()[0].sends == 2
    assert world.result_digest(job, provider) == direct_digest(1024, 42, 150)


def test_rpc_down_the_agent_waits_logs_once_and_commits_when_it_is_back(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    world.start_worker()
    alice = world.agent("alice")
    provider = world.cast.providers["alice"].address
    job = world.submit_matmul(64, seed=61)
    world.drive(lambda: bool(alice.ledger.all()), what="the duty")
    rpc = alice.market.w3.provider
    endpoint = rpc.endpoint_uri  # type: ignore[attr-defined]
    rpc.endpoint_uri = "http://127.0.0.1:9"  # type: ignore[attr-defined]  # nothing listens
    try:
        for _ in range(10):
            alice.step()  # never raises
            time.sleep(0.2)
        assert alice.rpc.down
    finally:
        rpc.endpoint_uri = endpoint  # type: ignore[attr-defined]
    assert world.commits(job) == []
    world.drive(lambda: world.state(job) == JobState.COMMITTED, what="the commit")
    assert world.commits(job) == [provider]
    assert _warnings(caplog, "RPC http") == 1
    assert any("is back after" in r.getMessage() for r in caplog.records)


def test_the_run_loop_outlives_an_unexpected_error(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.start_worker()
    alice = world.agent("alice", poll_interval=0.1)
    job = world.submit_matmul(64, seed=62)
    discover = alice._discover
    failures = iter([True, True])

    def flaky(report: AgentReport) -> None:
        if next(failures, False):
            raise RuntimeError("a bug in one cycle")
        discover(report)

    alice._discover = flaky  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(target=alice.run, args=(stop,), daemon=True)
    thread.start()
    try:
        world.drive(lambda: world.state(job) == JobState.COMMITTED, agents=[], what="the commit")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    tracebacks = [r for r in caplog.records if r.exc_info and "agent cycle" in r.getMessage()]
    assert len(tracebacks) == 1  # logged with its traceback once, then the loop went on


def test_a_run_that_failed_outside_the_job_is_sent_again_not_given_up(world: World) -> None:
    """Redis went away while the worker stored a finished run: Celery records the task as
    FAILED with a ConnectionError. That is no reason to hand the seat back: the agent runs the
    task again under the same id and the job settles, nothing released, nobody slashed."""
    alice = world.agent("alice")
    provider = world.cast.providers["alice"].address
    job = world.submit_matmul(64, seed=43)
    world.drive(lambda: bool(alice.ledger.all()), what="the duty")
    tid = alice.ledger.all()[0].task_id
    # No worker yet: the task waits in the queue while its stored result says it failed.
    alice.celery.backend.mark_as_failure(tid, ConnectionError("Error 111 connecting to redis"))
    report = alice.step()
    assert job in report.resent and job not in report.abandoned
    world.start_worker()
    _settle(world, job)
    assert world.commits(job) == [provider]
    duty = alice.ledger.get(tid)
    assert duty is not None and duty.status == "closed" and duty.sends == 2
    assert world.cast.owner.provider(provider).jobs_slashed == 0
    assert world.result_digest(job, provider) == direct_digest(64, 43)
