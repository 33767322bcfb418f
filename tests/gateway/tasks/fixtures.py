"""Shared pieces of the task tests (no tests here): a settable clock, a real
Redis under a unique key prefix and a real RabbitMQ under a unique queue name
(each skipped when absent, failed under CI=true), queues of every backend, and
a local S3 server (moto)."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aio_pika
import pytest
from aiormq.exceptions import AMQPError

from gateway.tasks.archive import LocalResultStore
from gateway.tasks.memory import MemoryTaskQueue
from gateway.tasks.queue import ResultStore, TaskQueue
from gateway.tasks.rabbitmq_queue import RabbitMQTaskQueue
from gateway.tasks.redis_queue import RedisTaskQueue
from gateway.tasks.states import RetryPolicy
from tests.conftest import REDIS_URL, service_missing

RABBITMQ_URL = os.environ.get("INFERGATE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

POLICY = RetryPolicy(max_attempts=3, base_s=10.0, max_s=25.0, jitter=0.5)
VISIBILITY_S = 0.3


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


QueueFactory = Callable[..., TaskQueue]


@pytest.fixture
async def make_memory_queue(tmp_path: Path, clock: FakeClock) -> AsyncIterator[QueueFactory]:
    made: list[TaskQueue] = []

    def make(results: ResultStore | None = None, **options: object) -> TaskQueue:
        queue = MemoryTaskQueue(
            results or LocalResultStore(tmp_path / "results"),
            options.pop("policy", POLICY),  # type: ignore[arg-type]
            visibility_timeout_s=VISIBILITY_S,
            clock=clock,
            rng=random.Random(3),
            **options,  # type: ignore[arg-type]
        )
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.aclose()


@pytest.fixture
async def make_redis_queue(
    tmp_path: Path, clock: FakeClock, redis_prefix: str
) -> AsyncIterator[QueueFactory]:
    made: list[TaskQueue] = []

    def make(results: ResultStore | None = None, **options: object) -> TaskQueue:
        queue = RedisTaskQueue(
            str(options.pop("url", REDIS_URL)),
            results or LocalResultStore(tmp_path / "results"),
            options.pop("policy", POLICY),  # type: ignore[arg-type]
            prefix=redis_prefix,
            visibility_timeout_s=options.pop("visibility_timeout_s", VISIBILITY_S),  # type: ignore[arg-type]
            clock=options.pop("clock", clock),  # type: ignore[arg-type]
            rng=random.Random(3),
            **options,  # type: ignore[arg-type]
        )
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.aclose()


async def delete_declared(url: str, names: set[str]) -> None:
    """Delete the queues and exchanges a test's brokers declared."""
    connection = await aio_pika.connect(url, timeout=5)
    async with connection:
        channel = await connection.channel()
        for name in sorted(names):
            if name.endswith(".dead-letter"):
                await channel.exchange_delete(name)
            else:
                await channel.queue_delete(name)


@pytest.fixture
async def rabbitmq_queue_name() -> str:
    """A work queue name of the test's own (make_rabbitmq_queue deletes it after)."""
    try:
        connection = await aio_pika.connect(RABBITMQ_URL, timeout=2)
    except (AMQPError, OSError, TimeoutError) as exc:
        service_missing(
            f"no RabbitMQ at {RABBITMQ_URL} ({exc!r}); start one to run the RabbitMQ tests"
        )
    await connection.close()
    return f"infergate.test.{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def make_rabbitmq_queue(
    tmp_path: Path, clock: FakeClock, redis_prefix: str, rabbitmq_queue_name: str
) -> AsyncIterator[QueueFactory]:
    """RabbitMQ queues (the broker at RABBITMQ_URL, or `url`) with their state in Redis."""
    made: list[tuple[str, RabbitMQTaskQueue]] = []

    def make(results: ResultStore | None = None, **options: object) -> TaskQueue:
        url = str(options.pop("url", RABBITMQ_URL))
        queue = RabbitMQTaskQueue(
            url,
            REDIS_URL,
            results or LocalResultStore(tmp_path / "results"),
            options.pop("policy", POLICY),  # type: ignore[arg-type]
            queue=str(options.pop("queue", rabbitmq_queue_name)),
            prefix=redis_prefix,
            visibility_timeout_s=options.pop("visibility_timeout_s", VISIBILITY_S),  # type: ignore[arg-type]
            clock=options.pop("clock", clock),  # type: ignore[arg-type]
            rng=random.Random(3),
            **options,  # type: ignore[arg-type]
        )
        made.append((url, queue))
        return queue

    yield make
    declared: dict[str, set[str]] = {}
    for url, queue in made:
        declared.setdefault(url, set()).update(queue.broker.declared)
        await queue.aclose()
    for url, names in declared.items():
        if url == RABBITMQ_URL:  # a private node is gone with its test
            await delete_declared(url, names)


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible HTTP server on a free local port (moto), with a bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="results")
    s3.close()
    yield endpoint
    server.stop()


@pytest.fixture(autouse=True)
def _s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto accepts any; boto3 only needs some, and must never find real ones.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
