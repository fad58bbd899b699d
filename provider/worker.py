"""The provider's Celery app and its one task, `depin.execute`.

Delivery rules (DESIGN section 4): the broker and result backend are Redis; a task is
acknowledged only after it finished (`acks_late`), a worker takes one task at a time
(`prefetch 1`), a task whose worker process died is put back (`reject_on_worker_lost`), and an
unacknowledged task returns to the queue after `visibility_timeout`, which the settings keep
above the task time limit. Each delivery is counted in Redis under the task id; past
`max_deliveries` (crashes and retries together) the task gives the job up instead of running it
again, so one poisonous job cannot loop forever.

The task is thin and idempotent: it validates its request, returns the stored result when the
same task id already succeeded, re-reads the job on-chain (nothing to do once the provider
committed or the job moved on), then calls `provider.execute.execute`.

Torch is imported only inside the task, in the pool's child processes: a prefork parent that
started torch (or CUDA) would hand its children a state they cannot use.
"""

from __future__ import annotations

import logging
import socket
from typing import Annotated, Any, Final

import redis
from celery import Celery, Task
from celery.result import AsyncResult
from celery.signals import worker_process_init
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from marketplace.protocol.artifact_client import ArtifactClient
from marketplace.protocol.chain import connect
from marketplace.protocol.client import JobState, Market
from marketplace.protocol.deployment import Deployment
from marketplace.protocol.errors import ChainError, ConfigError
from provider.execute import TransientError, execute
from provider.settings import ProviderSettings

__all__ = ["TASK_NAME", "TaskRequest", "make_celery", "run_worker", "task_id"]

log = logging.getLogger(__name__)

TASK_NAME: Final = "depin.execute"
#: How long task results and delivery counters are kept in Redis.
RESULT_TTL: Final = 7 * 86_400
_RETRY_CAP: Final = 60
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


def task_id(chain_id: int, market: str, request: TaskRequest) -> str:
    """The deterministic id of the task for (job, round, role, provider) on one deployment."""
    return (
        f"depin:{chain_id}:{market.lower()}:{request.job_id}:{request.round}:"
        f"{request.role}:{request.provider.lower()}"
    )


def make_celery(settings: ProviderSettings) -> Celery:
    """The Celery app of `settings`' broker and queue, with `depin.execute` registered."""
    app = Celery("depin-provider", broker=settings.broker_url, backend=settings.broker_url)
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
        return state.run(self, request)

    def preload(**_: Any) -> None:
        state.preload()

    if settings.preload:
        # Runs in each pool process right after the fork, before it takes a task.
        worker_process_init.connect(preload, weak=False)

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
            self._redis = redis.Redis.from_url(self.settings.broker_url)
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

        self.profile()
        device = select_device()
        try:
            load_model(str(device))
        except Exception:  # a broken model install must not keep the worker from other kinds
            log.exception("preloading the embedding model failed; embed jobs will load it")

    def run(self, task: Task[Any, Any], raw: dict[str, Any]) -> dict[str, Any]:
        try:
            request = TaskRequest.model_validate(raw)
        except ValidationError as exc:
            # A request this worker cannot read is not retried: no delivery would do better.
            return {"status": "rejected", "reason": f"malformed task request: {exc}"}
        tid = str(task.request.id)
        deliveries = self._count_delivery(tid)
        if deliveries > self.settings.max_deliveries:
            return {
                "status": "abandoned",
                "reason": f"delivered {deliveries} times, above DEPIN_PROVIDER_MAX_DELIVERIES "
                f"({self.settings.max_deliveries})",
            }
        previous: AsyncResult[Any] = task.AsyncResult(tid)
        if previous.state == "SUCCESS" and isinstance(previous.result, dict):
            return previous.result
        skip = self._skip_reason(request)
        if skip is not None:
            return {"status": "skipped", "reason": skip}
        try:
            execution = execute(
                request.job_id,
                bytes.fromhex(request.spec_hash[2:]),
                self.artifacts(),
                self.profile(),
            )
        except (TransientError, ChainError) as exc:
            countdown = min(2**deliveries, _RETRY_CAP)
            log.warning("job %d: %s; retry in %d s", request.job_id, exc, countdown)
            raise task.retry(exc=exc, countdown=countdown, max_retries=None) from exc
        log.info(
            "job %d (%s) done in %.2f s%s",
            request.job_id,
            request.role,
            execution.seconds,
            f", failed: {execution.failure}" if execution.failure else "",
        )
        return {"status": "done", "worker": socket.gethostname(), **execution.as_dict()}

    def _count_delivery(self, tid: str) -> int:
        key = f"depin:deliveries:{tid}"
        client = self.redis()
        count = int(client.incr(key))
        client.expire(key, RESULT_TTL)
        return count

    def _skip_reason(self, request: TaskRequest) -> str | None:
        """Why the job needs no run any more, read from the chain in one call; None when it
        does."""
        job = self.market().job(request.job_id)
        if job.state not in (JobState.ASSIGNED, JobState.AUDITING):
            return f"job {request.job_id} is {job.state.name}; commits are closed"
        if job.commit_mask >> request.index & 1:
            return "already committed"
        return None


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
