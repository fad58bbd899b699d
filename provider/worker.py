"""The provider's Celery app and its one task, `depin.execute`.

Delivery rules (DESIGN section 4): the broker is Redis (or RabbitMQ) and the result backend
Redis; a task is acknowledged only after it finished (`acks_late`), a worker takes one task at a
time (`prefetch 1`), a task whose worker process died is put back (`reject_on_worker_lost`), and
an unacknowledged task returns to the queue after `visibility_timeout` (Redis; RabbitMQ when the
worker's connection drops), which the settings keep above the task time limit. The delivery keys
below live in the result backend's Redis.

Budgets are by time, not by count. A transient failure (relayer, RPC unreachable) is retried
inside the task with capped backoff for as long as the job's on-chain deadline can still be
met (`provider.deadline.Budget`: chain time + `run_margin` before the deadline); then the task
returns `abandoned` with the deadline, and the agent releases an executor's seat instead of
being slashed as a no-show. Deliveries are counted in Redis under the task id only when a run
starts; past `max_deliveries` runs that never finished (worker crashes) the task gives the job
up instead of running it again, so one poisonous job cannot loop forever.

While a run goes on, a thread keeps `depin:alive:<task id>` in Redis (a short TTL, refreshed
every few seconds): the agent tells a lost task (not queued, not held by a worker, not alive)
from a slow one in seconds, and a second delivery of a task whose first delivery still runs
leaves the run to it (Celery's `Ignore`: it stores nothing, so the first run's result stands).

The task is thin and idempotent: it validates its request, returns the stored result when the
same task id already succeeded, re-reads the job on-chain (nothing to do once the provider
committed or the job moved on), then calls `provider.execute.execute`.

Torch is imported only inside the task, in the pool's child processes: a prefork parent that
started torch (or CUDA) would hand its children a state they cannot use.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from enum import StrEnum
from typing import Annotated, Any, Final, Self

import redis
from celery import Celery, Task
from celery.exceptions import Ignore
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from web3.exceptions import Web3Exception

from marketplace.protocol.artifact_client import ArtifactClient
from marketplace.protocol.chain import connect
from marketplace.protocol.client import Job, JobState, Market
from marketplace.protocol.deployment import Deployment
from marketplace.protocol.errors import ChainError, ConfigError, DepinError, validation_problems
from marketplace.protocol.outage import Outage
from provider.deadline import Budget, ChainClock
from provider.execute import Execution, TransientError, execute
from provider.settings import ProviderSettings

__all__ = [
    "ALIVE_TTL",
    "TASK_NAME",
    "OutcomeStatus",
    "TaskOutcome",
    "TaskRequest",
    "UnreadableOutcome",
    "alive_key",
    "deliveries_key",
    "held_key",
    "make_celery",
    "run_worker",
    "task_id",
]

log = logging.getLogger(__name__)

TASK_NAME: Final = "depin.execute"
#: How long task results and delivery counters are kept in Redis.
RESULT_TTL: Final = 7 * 86_400
#: Longest wait between two attempts of a run that failed for a transient reason.
RETRY_CAP: Final = 20.0
#: Seconds `depin:alive:<task id>` outlives its last refresh, and how often a run refreshes it.
ALIVE_TTL: Final = 10
ALIVE_REFRESH: Final = 2.0
#: A run that would wait past its time limit minus this hands the task back to the queue.
_TIME_LIMIT_SLACK: Final = 30.0
#: Seconds a new pool process may take to start (preload included) before Celery replaces it.
PROCESS_START_TIMEOUT: Final = 300.0


class TaskRequest(BaseModel):
    """What the agent asks a worker to run: one job, in one role, for one provider."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: Annotated[StrictInt, Field(ge=0)]
    round: Annotated[StrictInt, Field(ge=0)]
    role: Annotated[StrictStr, Field(pattern=r"^(executor|verifier)$")]
    #: The provider's participant index in the job (its bit in the job's commit mask).
    index: Annotated[StrictInt, Field(ge=0, le=255)]
    provider: StrictStr
    #: The job's on-chain spec hash, 0x-prefixed hex.
    spec_hash: Annotated[StrictStr, Field(pattern=r"^0x[0-9a-f]{64}$")]


class OutcomeStatus(StrEnum):
    """What one run of `depin.execute` came to (the `status` of its stored result)."""

    #: The job ran, or failed deterministically: a digest to commit.
    DONE = "done"
    #: Nothing to run any more: the provider already committed, or the job moved on.
    SKIPPED = "skipped"
    #: Given up: the job's deadline cannot be met, or too many runs crashed.
    ABANDONED = "abandoned"
    #: The request could not be read; no delivery would do better.
    REJECTED = "rejected"


class UnreadableOutcome(DepinError, ValueError):
    """A task's stored result is not a `TaskOutcome`."""


_SHARED_REDIS: Final = (
    "give each provider its own DEPIN_PROVIDER_QUEUE, and no other Celery app this Redis database"
)
#: The keys each status writes, in order: the JSON object the result backend has always held.
_OUTCOME_KEYS: Final = {
    OutcomeStatus.DONE: ("status", "worker", "job_id", "digest", "artifact", "failure", "seconds"),
    OutcomeStatus.SKIPPED: ("status", "reason"),
    OutcomeStatus.ABANDONED: ("status", "reason", "deadline"),
    OutcomeStatus.REJECTED: ("status", "reason"),
}


class TaskOutcome(BaseModel):
    """What a worker returns for one `TaskRequest`, and what the agent reads back from the
    result backend. Celery carries it as the JSON object of `to_json()`."""

    # A key a newer worker adds does not make its result unreadable to this agent.
    model_config = ConfigDict(frozen=True, extra="ignore")

    status: OutcomeStatus
    #: Why there is no digest (skipped, abandoned, rejected).
    reason: StrictStr = ""
    #: Abandoned: the on-chain deadline the run could not meet; None when the crash budget,
    #: not the deadline, gave the job up.
    deadline: StrictInt | None = None
    #: Done: the job, the digest to commit (0x-prefixed hex), the sha256 of the encrypted result
    #: artifact ("" when there is no key to encrypt to), the failure code ("" when the job ran),
    #: the run's seconds and the worker's host name.
    job_id: StrictInt | None = None
    digest: Annotated[StrictStr, Field(pattern=r"^0x[0-9a-f]{64}$")] | None = None
    artifact: StrictStr = ""
    failure: StrictStr = ""
    seconds: float = 0.0
    worker: StrictStr = ""

    @model_validator(mode="after")
    def _done_has_a_digest(self) -> Self:
        if self.status is OutcomeStatus.DONE and (self.digest is None or self.job_id is None):
            raise ValueError("a done outcome needs its job_id and digest")
        return self

    @classmethod
    def done(cls, execution: Execution, worker: str) -> TaskOutcome:
        """The outcome of a run of `execution` on host `worker`."""
        return cls.model_validate(
            {"status": OutcomeStatus.DONE, "worker": worker} | execution.as_dict()
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object the task returns (Celery serialises it): the keys of its status."""
        data = self.model_dump(mode="json")
        return {key: data[key] for key in _OUTCOME_KEYS[self.status]}

    @classmethod
    def from_json(cls, value: object) -> TaskOutcome:
        """The outcome a task returned, from the result backend.

        Results stored by workers of earlier releases (in Redis during an upgrade) are the same
        JSON objects, so they are accepted as they are. Anything else (another program's result
        under the same task id, a value that is not an object) raises `UnreadableOutcome`.
        """
        if not isinstance(value, dict):
            raise UnreadableOutcome(
                f"the task result is not a JSON object but {type(value).__name__} "
                f"{repr(value)[:200]}; it was not written by a depin worker: {_SHARED_REDIS}"
            )
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise UnreadableOutcome(
                f"the task result {repr(value)[:200]} is not a task outcome "
                f"({validation_problems(exc)}); it was not written by a depin worker: "
                f"{_SHARED_REDIS}"
            ) from None


def task_id(chain_id: int, market: str, request: TaskRequest) -> str:
    """The deterministic id of the task for (job, round, role, provider) on one deployment."""
    return (
        f"depin:{chain_id}:{market.lower()}:{request.job_id}:{request.round}:"
        f"{request.role}:{request.provider.lower()}"
    )


def alive_key(tid: str) -> str:
    """The Redis key a running delivery of task `tid` keeps alive."""
    return f"depin:alive:{tid}"


def held_key(tid: str) -> str:
    """The Redis key a live worker keeps while it holds task `tid` (reserved or running)."""
    return f"depin:held:{tid}"


def deliveries_key(tid: str) -> str:
    """The Redis key counting the runs of task `tid` that started."""
    return f"depin:deliveries:{tid}"


def make_celery(settings: ProviderSettings) -> Celery:
    """The Celery app of `settings`' broker and queue, with `depin.execute` registered."""
    app = Celery("depin-provider", broker=settings.broker_url, backend=settings.backend_url)
    transport = {"visibility_timeout": settings.visibility_timeout}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        result_expires=RESULT_TTL,
        result_extended=True,
        task_default_queue=settings.queue,
        task_track_started=True,
        task_time_limit=settings.task_time_limit,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # A pool process reports for work only after the preload (torch, the model): seconds,
        # more on a cold disk. Celery's 4 s default would kill and respawn it forever.
        worker_proc_alive_timeout=PROCESS_START_TIMEOUT,
    )
    state = _WorkerState(settings)

    def execute_task(self: Task[Any, Any], request: dict[str, Any]) -> dict[str, Any]:
        return state.run(self, request).to_json()

    def preload(**_: Any) -> None:
        state.preload()

    if settings.preload:
        # Runs in each pool process right after the fork, before it takes a task.
        worker_process_init.connect(preload, weak=False)

    holding = _Holding(settings.backend_url)

    def start_holding(**_: Any) -> None:
        holding.start()

    def stop_holding(**_: Any) -> None:
        holding.stop()

    # In the worker's main process: a task it holds waits there (for a free pool process, which
    # may still be starting) before any run marks it alive.
    worker_ready.connect(start_holding, weak=False)
    worker_shutdown.connect(stop_holding, weak=False)

    app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)(execute_task)
    return app


class _WorkerState:
    """Per-process connections of the task, opened on first use (after the pool forked)."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self._market: Market | None = None
        self._artifacts: ArtifactClient | None = None
        self._redis: redis.Redis | None = None
        self._profile: str | None = None

    def market(self) -> Market:
        if self._market is None:
            deployment = Deployment.load(self.settings.deployment_file)
            self._market = Market(connect(self.settings.rpc_url, deployment.chain_id), deployment)
        return self._market

    def artifacts(self) -> ArtifactClient:
        if self._artifacts is None:
            self._artifacts = ArtifactClient(self.settings.relayer_url)
        return self._artifacts

    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.settings.backend_url)
        return self._redis

    def profile(self) -> str:
        """The determinism profile of this process; the first call also sizes torch's thread
        pool (digests do not depend on it: the CPU profile pins the kernels)."""
        if self._profile is None:
            import torch

            from provider.runtime.device import profile_name

            torch.set_num_threads(self.settings.threads_per_job())
            self._profile = profile_name()
        return self._profile

    def preload(self) -> None:
        """Starts torch (sized thread pool, profile) and loads the embedding model."""
        from provider.runtime.device import select_device
        from provider.runtime.embed import load_model

        started = time.monotonic()
        self.profile()
        device = select_device()
        try:
            load_model(str(device))
        except Exception:  # a broken model install must not keep the worker from other kinds
            log.exception("preloading the embedding model failed; embed jobs will load it")
            return
        # Operators (and tests) wait for this line: the pool process takes work at full speed.
        log.info(
            "preloaded torch and the embedding model on %s in %.1f s",
            device,
            time.monotonic() - started,
        )

    def run(self, task: Task[Any, Any], raw: dict[str, Any]) -> TaskOutcome:
        try:
            request = TaskRequest.model_validate(raw)
        except ValidationError as exc:
            # A request this worker cannot read is not retried: no delivery would do better.
            return TaskOutcome(
                status=OutcomeStatus.REJECTED, reason=f"malformed task request: {exc}"
            )
        tid = str(task.request.id)
        stored = _stored(task, tid)
        if stored is not None:
            return stored
        alive = _Alive(self.redis(), tid)
        if not alive.claim():
            # Another delivery of this task runs now (a re-send crossed a redelivery): it
            # stores the result; this one stores nothing and leaves the run to it.
            log.info("job %d: task %s already runs elsewhere; leaving it", request.job_id, tid)
            raise Ignore()
        try:
            stored = _stored(task, tid)  # finished between the first look and claim
            if stored is not None:
                return stored
            deliveries = self._count_delivery(tid)
            if deliveries > self.settings.max_deliveries:
                return TaskOutcome(
                    status=OutcomeStatus.ABANDONED,
                    reason=f"{deliveries} runs started and never finished (worker crashes), "
                    f"above DEPIN_PROVIDER_MAX_DELIVERIES ({self.settings.max_deliveries})",
                )
            return self._run_within_deadline(task, request, tid)
        finally:
            alive.release()

    def _run_within_deadline(
        self, task: Task[Any, Any], request: TaskRequest, tid: str
    ) -> TaskOutcome:
        """Runs the job, retrying transient failures while its on-chain deadline can still be
        met; `abandoned` (with the deadline) once it cannot."""
        budget = Budget(margin=self.settings.run_margin, max_delay=RETRY_CAP)
        clock = ChainClock()
        outage = Outage(f"job {request.job_id}: relayer or RPC", log, max_delay=RETRY_CAP)
        started = time.monotonic()
        deadline: int | None = None
        attempt = 0
        while True:
            try:
                job, chain_now = self._read_job(request.job_id)
            except ChainError as exc:
                problem: Exception = exc
            else:
                clock.observe(chain_now)
                skip = _skip_reason(request, job)
                if skip is not None:
                    return TaskOutcome(status=OutcomeStatus.SKIPPED, reason=skip)
                # An unstaffed audit round's deadline is the staffing deadline, which the round
                # moves on when it fills: a verifier waits for the chain to decide.
                deadline = (
                    None if request.role == "verifier" and job.needs_staffing else job.deadline
                )
                if deadline is not None and not budget.feasible(chain_now, deadline):
                    return _abandoned(request, deadline, chain_now, budget)
                try:
                    execution = execute(
                        request.job_id,
                        bytes.fromhex(request.spec_hash[2:]),
                        self.artifacts(),
                        self.profile(),
                    )
                except (TransientError, ChainError) as exc:
                    problem = exc
                else:
                    outage.ok()
                    return self._done(request, execution)
            wait = budget.next_wait(attempt, clock.now(), deadline)
            if wait is None:
                assert deadline is not None
                return _abandoned(request, deadline, clock.now() or 0.0, budget, problem)
            outage.failed(problem)
            if (
                time.monotonic() - started + wait
                > self.settings.task_time_limit - _TIME_LIMIT_SLACK
            ):
                # The time limit would kill this run mid-wait: hand the task back to the queue,
                # without spending a crash delivery on it.
                self._uncount_delivery(tid)
                raise task.retry(exc=problem, countdown=wait, max_retries=None)
            time.sleep(wait)
            attempt += 1

    def _done(self, request: TaskRequest, execution: Execution) -> TaskOutcome:
        log.info(
            "job %d (%s) done in %.2f s (%s)%s",
            request.job_id,
            request.role,
            execution.seconds,
            ", ".join(f"{name} {seconds:.3f}" for name, seconds in execution.phases),
            f", failed: {execution.failure}" if execution.failure else "",
        )
        return TaskOutcome.done(execution, socket.gethostname())

    def _read_job(self, job_id: int) -> tuple[Job, int]:
        """The job and the latest block's timestamp; ChainError when the RPC fails."""
        try:
            market = self.market()
            job = market.job(job_id)
            now = int(market.w3.eth.get_block("latest")["timestamp"])
        except ChainError:
            raise
        except (OSError, Web3Exception) as exc:  # requests' errors are OSErrors
            raise ChainError(
                f"reading job {job_id} at the RPC failed ({type(exc).__name__}: {exc}); "
                "retrying while its deadline allows"
            ) from exc
        return job, now

    def _count_delivery(self, tid: str) -> int:
        """Counts a run that starts now. Redis down: not counted (the poison guard waits for
        it), rather than failing a run the worker could do."""
        try:
            client = self.redis()
            count = int(client.incr(deliveries_key(tid)))
            client.expire(deliveries_key(tid), RESULT_TTL)
        except redis.RedisError as exc:
            log.warning("delivery of %s not counted: %s", tid, exc)
            return 1
        return count

    def _uncount_delivery(self, tid: str) -> None:
        try:
            self.redis().decr(deliveries_key(tid))
        except redis.RedisError as exc:
            log.warning("delivery of %s not uncounted: %s", tid, exc)


def _stored(task: Task[Any, Any], tid: str) -> TaskOutcome | None:
    """The stored outcome of a task that already succeeded; None otherwise (or Redis down, or
    a stored value no worker wrote: the run then replaces it). Read from the backend directly,
    not through an AsyncResult, whose result-channel subscription does not survive a Redis
    outage."""
    try:
        meta = task.backend.get_task_meta(tid, cache=False)
    except redis.RedisError:
        return None
    if meta.get("status") != "SUCCESS":
        return None
    try:
        return TaskOutcome.from_json(meta.get("result"))
    except UnreadableOutcome as exc:
        log.warning("task %s: stored result ignored, running again: %s", tid, exc)
        return None


def _skip_reason(request: TaskRequest, job: Job) -> str | None:
    """Why the job needs no run any more; None when it does."""
    if job.state not in (JobState.ASSIGNED, JobState.AUDITING):
        return f"job {request.job_id} is {job.state.name}; commits are closed"
    if job.commit_mask >> request.index & 1:
        return "already committed"
    return None


def _abandoned(
    request: TaskRequest,
    deadline: int,
    chain_now: float,
    budget: Budget,
    problem: Exception | None = None,
) -> TaskOutcome:
    reason = (
        f"job {request.job_id}: chain time {chain_now:.0f} + {budget.margin:.0f} s margin "
        f"passes the deadline {deadline}"
    )
    if problem is not None:
        reason += f"; last failure: {problem}"
    log.warning("%s; giving the job up", reason)
    return TaskOutcome(status=OutcomeStatus.ABANDONED, reason=reason, deadline=deadline)


class _Holding:
    """Keeps `depin:held:<task id>` for every task the worker's main process holds."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="depin-held", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        from celery.worker import state

        client = redis.Redis.from_url(self.redis_url, socket_timeout=5.0)
        host = socket.gethostname()
        while not self._stop.wait(ALIVE_REFRESH):
            try:
                ids = [str(r.id) for r in list(state.reserved_requests)]
            except RuntimeError:  # the set changed while copied; next tick
                continue
            try:
                with client.pipeline(transaction=False) as pipe:
                    for tid in ids:
                        pipe.set(held_key(tid), host, ex=ALIVE_TTL)
                    pipe.execute()
            except redis.RedisError:
                continue  # Redis down: nobody can look; retry on the next tick


class _Alive:
    """`depin:alive:<task id>` while this delivery runs: claimed once, refreshed by a thread."""

    def __init__(self, client: redis.Redis, tid: str) -> None:
        self.client = client
        self.key = alive_key(tid)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self) -> bool:
        """Takes the key unless another live delivery holds it; starts the refresh thread."""
        try:
            if not self.client.set(self.key, self.owner, nx=True, ex=ALIVE_TTL):
                holder = self.client.get(self.key)
                if holder is not None and not _dead_here(_text(holder)):
                    return False
                # The holder was a process of this machine that died (a killed pool process):
                # its key would linger for the TTL; take over now.
                self.client.set(self.key, self.owner, ex=ALIVE_TTL)
        except redis.RedisError as exc:
            log.warning("cannot mark %s alive: %s", self.key, exc)
        self._thread = threading.Thread(target=self._refresh, name="depin-alive", daemon=True)
        self._thread.start()
        return True

    def _refresh(self) -> None:
        while not self._stop.wait(ALIVE_REFRESH):
            try:
                # Set, not just expire: after a Redis restart without data the key comes back.
                self.client.set(self.key, self.owner, ex=ALIVE_TTL)
            except redis.RedisError:
                continue  # Redis down: the agent cannot look either; retry on the next tick

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            holder = self.client.get(self.key)
            if holder is not None and _text(holder) == self.owner:
                self.client.delete(self.key)
        except redis.RedisError:
            pass  # expires by itself


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _dead_here(holder: str) -> bool:
    """Whether `holder` (host:pid:nonce) names a process of this machine that no longer runs."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # an earlier delivery in this very process ended without releasing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def run_worker(
    settings: ProviderSettings, *, concurrency: int | None = None, loglevel: str = "INFO"
) -> None:
    """Runs a Celery worker on `settings.queue` until it is stopped (SIGTERM: warm shutdown)."""
    if not settings.deployment_file.exists():
        raise ConfigError(
            f"no deployment file at {settings.deployment_file}; set DEPIN_PROVIDER_DEPLOYMENT_FILE"
        )
    if concurrency is not None:  # the pool size is the capacity the threads are split by
        settings = settings.model_copy(update={"capacity": concurrency})
    app = make_celery(settings)
    argv = [
        "worker",
        "--queues",
        settings.queue,
        "--concurrency",
        str(settings.capacity),
        "--pool",
        "prefork",
        "--loglevel",
        loglevel,
        "--hostname",
        f"{settings.queue}@{socket.gethostname()}",
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main(argv)


if __name__ == "__main__":  # python -m provider.worker: a worker configured by DEPIN_PROVIDER_*
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_worker(ProviderSettings())
