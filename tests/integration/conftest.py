"""Service fixtures for the queue tests: a URL from the environment, else testcontainers, else skip naming both."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sketchtext.plugin.db import MetadataDB
from tests.conftest import REDIS_ENV, docker_answers
from tests.integration.processes import Worker

QDRANT_ENV = "SKETCHTEXT_TEST_QDRANT_URL"
AMQP_ENV = "SKETCHTEXT_TEST_AMQP_URL"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A Redis URL (database 15 by convention): $SKETCHTEXT_TEST_REDIS_URL, else testcontainers, else skip."""
    if os.environ.get(REDIS_ENV):
        yield os.environ[REDIS_ENV]
        return
    if not docker_answers():
        pytest.skip(f"no Redis: set {REDIS_ENV} (e.g. redis://127.0.0.1:6379/15) or run Docker for testcontainers")
    from testcontainers.community.redis import RedisContainer

    with RedisContainer("redis:7-alpine") as container:
        yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/15"


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The Redis database, flushed before and after the test (queues, unacknowledged messages, results)."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    try:
        yield redis_server
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def qdrant_url() -> Iterator[str]:
    """A Qdrant server: $SKETCHTEXT_TEST_QDRANT_URL, else testcontainers, else skip."""
    if os.environ.get(QDRANT_ENV):
        yield os.environ[QDRANT_ENV]
        return
    if not docker_answers():
        pytest.skip(f"no Qdrant server: set {QDRANT_ENV} (e.g. http://127.0.0.1:6333) or run Docker for testcontainers")
    from testcontainers.community.qdrant import QdrantContainer

    with QdrantContainer("qdrant/qdrant:v1.16.0") as container:
        yield f"http://{container.rest_host_address}"


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A RabbitMQ broker: $SKETCHTEXT_TEST_AMQP_URL, else testcontainers, else skip."""
    if os.environ.get(AMQP_ENV):
        yield os.environ[AMQP_ENV]
        return
    if not docker_answers():
        pytest.skip(f"no RabbitMQ: set {AMQP_ENV} (e.g. amqp://guest:guest@127.0.0.1:5672//) or run Docker")
    from testcontainers.community.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3-alpine") as container:
        yield f"amqp://guest:guest@{container.get_container_host_ip()}:{container.get_exposed_port(5672)}//"


@pytest.fixture
def workers(tmp_path: Path, redis_url: str) -> Iterator[Callable[..., Worker]]:
    """Starts workers; every one is stopped (and its process group killed) when the test ends."""
    started: list[Worker] = []

    def start(env: dict[str, str], *args: str, slow: bool = False, script: Path | None = None) -> Worker:
        worker = Worker(env, tmp_path / f"worker-{len(started)}.log", args, slow=slow, script=script)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=15)


@pytest.fixture
def migrated(postgres_url: str) -> str:
    MetadataDB(postgres_url).upgrade()  # as `sketchtext db upgrade` does in a deployment
    return postgres_url
