"""Settings of a provider (agent, Celery workers, CLI), read from `DEPIN_PROVIDER_*` variables.

    DEPIN_PROVIDER_RPC_URL              JSON-RPC endpoint of the chain (http://127.0.0.1:8545)
    DEPIN_PROVIDER_DEPLOYMENT_FILE      deployment JSON (deployment.json)
    DEPIN_PROVIDER_KEYSTORE_FILE        encrypted JSON keystore of the provider key, with
    DEPIN_PROVIDER_KEYSTORE_PASSWORD    its password; or instead
    DEPIN_PROVIDER_PRIVATE_KEY          the key as 0x-prefixed hex (devnets, tests)
    DEPIN_PROVIDER_WALLET_DIR           where `--wallet NAME` finds NAME.json (the wallets
                                        `depin wallet new|import` writes)
    DEPIN_PROVIDER_RELAYER_URL          relayer API: artifacts, heartbeats, result notices
                                        (http://127.0.0.1:8700)
    DEPIN_PROVIDER_BROKER_URL           URL of the Celery broker: Redis (redis://) or
                                        RabbitMQ (amqp://) (redis://127.0.0.1:6379/0)
    DEPIN_PROVIDER_RESULT_BACKEND_URL   Redis URL of the Celery result backend, where the
                                        agent reads results and the workers keep their
                                        delivery keys (the broker URL when it is redis://;
                                        required with an amqp:// broker)
    DEPIN_PROVIDER_QUEUE                Celery queue of this provider's jobs (depin-jobs)
    DEPIN_PROVIDER_DB_URL               agent database (sqlite in ~/.local/share/depin/)
    DEPIN_PROVIDER_CONFIRMATIONS        blocks left unapplied behind the head (1)
    DEPIN_PROVIDER_POLL_INTERVAL        seconds between two agent cycles (1.0)
    DEPIN_PROVIDER_HEARTBEAT_INTERVAL   most seconds between heartbeats (15); the relayer
                                        announces its interval and a shorter one is followed
    DEPIN_PROVIDER_CAPACITY             jobs the workers run at once, announced in heartbeats (1)
    DEPIN_PROVIDER_TORCH_THREADS       torch threads per running job; by default the CPU cores
                                        divided among the worker's concurrent jobs
    DEPIN_PROVIDER_PRELOAD             start torch and load the embedding model in every worker
                                        process before it takes a job (true)
    DEPIN_PROVIDER_TASK_TIME_LIMIT      seconds a job may run before the worker kills it (3300)
    DEPIN_PROVIDER_VISIBILITY_TIMEOUT   seconds before Redis redelivers an unacknowledged task;
                                        above the task time limit (3600)
    DEPIN_PROVIDER_MAX_DELIVERIES       deliveries of one task that started a run and never
                                        finished it (worker crashes) before the task gives the
                                        job up (3); retries of transient failures do not count
    DEPIN_PROVIDER_RUN_MARGIN           seconds a run and its commit are expected to take: a
                                        transient failure is retried while chain time + this
                                        margin is before the job's deadline (15); an executor
                                        duty that cannot make it is released
    DEPIN_PROVIDER_RESEND_AFTER         last resort: seconds the agent waits for a queued task
                                        before sending it again (same task id; the task is
                                        idempotent) (600); a task lost from Redis (not queued,
                                        not held by a worker, no live run) is re-sent at once
    DEPIN_PROVIDER_STAFF_AFTER_BLOCKS   blocks after an audit's seed block before the agent calls
                                        staffAudit itself for an audit of a job it executed,
                                        should the keeper not have (3; 0: never)
    DEPIN_PROVIDER_BEHAVIOR             honest | lazy | copycat | no-show (honest; the others are
                                        test aids for the demo and the tests)

Two providers may share one Redis server when their queues differ; `depin devnet up` names a
queue per provider. With RabbitMQ as the broker the result backend stays Redis (the agent
subscribes to its result channels and reads the workers' keys there): set
DEPIN_PROVIDER_BROKER_URL=amqp://... and DEPIN_PROVIDER_RESULT_BACKEND_URL=redis://....
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from marketplace.protocol.heartbeat import HEARTBEAT_INTERVAL
from marketplace.protocol.places import data_dir
from marketplace.protocol.settings import ChainSettings, sqlite_url

__all__ = ["Behavior", "ProviderSettings"]

#: URL schemes of a Redis server (TCP, TLS, Unix socket).
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

Behavior = Literal["honest", "lazy", "copycat", "no-show"]


def _data_dir() -> Path:
    return data_dir()


def _scheme(url: str) -> str:
    """A URL's scheme, for messages (the rest may hold a password)."""
    return url.split("://", 1)[0] + "://..." if "://" in url else "not a URL"


class ProviderSettings(ChainSettings):
    """Configuration of one provider; every field has a `DEPIN_PROVIDER_` variable."""

    model_config = SettingsConfigDict(env_prefix="DEPIN_PROVIDER_", extra="forbid")

    #: Where `--wallet NAME` finds NAME.json: the wallets `depin wallet new|import` writes, the
    #: same folder for every role.
    wallet_dir: Path = Field(default_factory=lambda: _data_dir() / "wallets")
    relayer_url: str = "http://127.0.0.1:8700"
    broker_url: str = "redis://127.0.0.1:6379/0"
    #: None: the broker's URL, which must then be Redis's.
    result_backend_url: str | None = None
    queue: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")] = "depin-jobs"
    #: SQLAlchemy URL of the agent's database; by default one file per provider address.
    db_url: str | None = None
    confirmations: Annotated[int, Field(ge=0)] = 1
    poll_interval: Annotated[float, Field(gt=0)] = 1.0
    #: The agent wakes as soon as its worker stores a result (a Redis subscription to the
    #: result backend's channels) instead of at its next poll.
    wake_on_results: bool = True
    heartbeat_interval: Annotated[int, Field(ge=1)] = HEARTBEAT_INTERVAL
    capacity: Annotated[int, Field(ge=1, le=1024)] = 1
    #: torch intra-op threads of each running job; None splits the cores among `capacity` jobs.
    torch_threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    #: Each worker process starts torch and loads the embedding model before its first job, so
    #: no job pays the few seconds of that start.
    preload: bool = True
    task_time_limit: Annotated[int, Field(ge=1)] = 3_300
    visibility_timeout: Annotated[int, Field(ge=1)] = 3_600
    max_deliveries: Annotated[int, Field(ge=1, le=100)] = 3
    #: Seconds kept before a job's deadline for the run and the commit (see `provider.deadline`).
    run_margin: Annotated[float, Field(ge=0)] = 15.0
    resend_after: Annotated[float, Field(gt=0)] = 600.0
    #: Blocks after an audit's seed block before the agent staffs the audit of its own job
    #: itself (the keeper's job; insurance for when it is down). 0 disables it.
    staff_after_blocks: Annotated[int, Field(ge=0)] = 3
    #: Test aid: how the agent behaves. Anything but "honest" gets the provider slashed.
    behavior: Behavior = "honest"

    @field_validator("wallet_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def backend_url(self) -> str:
        """The Redis URL of the result backend (checked when the settings are made)."""
        return self.result_backend_url if self.result_backend_url is not None else self.broker_url

    @property
    def broker_is_redis(self) -> bool:
        """Whether the broker is Redis, whose queues the agent can read to find lost tasks."""
        return self.broker_url.startswith(_REDIS_SCHEMES)

    @model_validator(mode="after")
    def _check(self) -> ProviderSettings:
        if not self.backend_url.startswith(_REDIS_SCHEMES):
            if self.result_backend_url is None:
                raise ValueError(
                    f"the broker {_scheme(self.broker_url)} is not Redis, so it cannot also be "
                    "the result backend: set DEPIN_PROVIDER_RESULT_BACKEND_URL to a Redis URL "
                    "(redis://host:6379/0), which the agent and the workers share"
                )
            raise ValueError(
                f"DEPIN_PROVIDER_RESULT_BACKEND_URL is {_scheme(self.result_backend_url)}, not "
                "Redis: the agent subscribes to the result backend's channels and reads the "
                "workers' delivery keys there, which only Redis offers; set it to a Redis URL "
                "(redis://host:6379/0)"
            )
        if self.visibility_timeout <= self.task_time_limit:
            raise ValueError(
                f"DEPIN_PROVIDER_VISIBILITY_TIMEOUT ({self.visibility_timeout} s) must exceed "
                f"DEPIN_PROVIDER_TASK_TIME_LIMIT ({self.task_time_limit} s), or Redis hands a "
                "running job to a second worker; raise the timeout or lower the limit"
            )
        return self

    def threads_per_job(self, cores: int | None = None) -> int:
        """torch threads for one job: `torch_threads`, else the cores shared by `capacity`
        concurrent jobs. More threads than cores make torch's parallel regions wait on each
        other whenever another process holds a core."""
        if self.torch_threads is not None:
            return self.torch_threads
        return max(1, (cores or os.cpu_count() or 1) // self.capacity)

    def database_url(self, address: str) -> str:
        """The agent database URL: `db_url`, or a SQLite file named after the provider."""
        if self.db_url is not None:
            return self.db_url
        path = _data_dir() / f"provider-{address.lower()}.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite_url(path)
