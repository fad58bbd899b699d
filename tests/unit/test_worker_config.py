"""The Celery delivery rules the provider relies on (docs/provider.md), as the app is built."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from provider.settings import ProviderSettings
from provider.worker import PROCESS_START_TIMEOUT, make_celery


def test_delivery_rules() -> None:
    settings = ProviderSettings(visibility_timeout=900, task_time_limit=800, queue="q1")
    conf = make_celery(settings).conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 900
    assert conf.task_time_limit == 800
    assert conf.task_default_queue == "q1"
    # A pool process preloads torch and the model before it reports; Celery's 4 s default
    # killed and respawned such processes without end on a cold disk.
    assert conf.worker_proc_alive_timeout == PROCESS_START_TIMEOUT >= 60


def test_visibility_timeout_must_exceed_the_time_limit() -> None:
    with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT"):
        ProviderSettings(visibility_timeout=600, task_time_limit=600)


@pytest.mark.parametrize(
    ("capacity", "threads", "cores", "expected"),
    [(1, None, 2, 2), (2, None, 2, 1), (3, None, 2, 1), (2, None, 16, 8), (2, 5, 16, 5)],
)
def test_torch_threads_split_the_cores(
    capacity: int, threads: int | None, cores: int, expected: int
) -> None:
    settings = ProviderSettings(capacity=capacity, torch_threads=threads)
    assert settings.threads_per_job(cores) == expected


def test_run_margin_is_seconds_before_the_deadline() -> None:
    assert ProviderSettings().run_margin == 15.0
    assert ProviderSettings(run_margin=0).run_margin == 0
    with pytest.raises(ValidationError, match="run_margin"):
        ProviderSettings(run_margin=-1)
