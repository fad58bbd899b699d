"""The Celery result backend is a setting of its own: the broker's URL by default when it is
Redis, required (and Redis) with another broker such as RabbitMQ."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from provider.settings import ProviderSettings
from provider.worker import make_celery

BROKER = "redis://10.0.0.5:6379/0"
RABBIT = "amqp://depin:secret@10.0.0.6:5672/depin"
BACKEND = "redis://10.0.0.7:6380/1"


def settings(**fields: object) -> ProviderSettings:
    return ProviderSettings(**fields)  # type: ignore[arg-type]


def test_a_redis_broker_is_also_the_result_backend_unless_told_otherwise() -> None:
    assert settings(broker_url=BROKER).backend_url == BROKER
    assert settings(broker_url=BROKER).broker_is_redis
    apart = settings(broker_url=BROKER, result_backend_url=BACKEND)
    assert apart.backend_url == BACKEND


def test_rabbitmq_as_broker_with_a_redis_result_backend() -> None:
    s = settings(broker_url=RABBIT, result_backend_url=BACKEND)
    assert s.backend_url == BACKEND
    assert not s.broker_is_redis
    app = make_celery(s)
    assert app.conf.broker_url == RABBIT
    assert app.conf.result_backend == BACKEND


def test_a_redis_broker_app_reads_results_from_its_own_backend() -> None:
    app = make_celery(settings(broker_url=BROKER, result_backend_url=BACKEND))
    assert app.conf.broker_url == BROKER
    assert app.conf.result_backend == BACKEND


def test_rabbitmq_without_a_result_backend_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValidationError) as refused:
        settings(broker_url=RABBIT)
    message = str(refused.value)
    assert "DEPIN_PROVIDER_RESULT_BACKEND_URL" in message
    assert "secret" not in message


def test_a_result_backend_other_than_redis_is_refused_naming_the_fix() -> None:
    with pytest.raises(ValidationError) as refused:
        settings(broker_url=RABBIT, result_backend_url="rpc://")
    message = str(refused.value)
    assert "only Redis" in message and "redis://host:6379/0" in message
