# ruff: noqa: F811  (pytest fixtures imported from fixtures.py are parameters here)
"""The RabbitMQ queue beyond the contract. The failure drills run against a
private node (rabbit_node.py) that they crash and restart: a worker killed
mid-task, the broker killed with tasks accepted, a poison task. The rest uses
the shared broker under a unique queue name: unconfirmed submits, retries
brought back by the retry queues alone, the queues' kind, the config."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import yaml
from aiormq.exceptions import ChannelPreconditionFailed

from adapters import build_provider
from gateway.config import GatewayConfig, parse_config
from gateway.tasks import states
from gateway.tasks.amqp import Broker
from gateway.tasks.errors import QueueUnavailable, TaskNotFound
from gateway.tasks.handlers import TaskContext, TaskType, load
from gateway.tasks.model import Task, TaskState
from gateway.tasks.queue import TaskQueue
from gateway.tasks.rabbitmq_queue import RabbitMQTaskQueue
from gateway.tasks.runtime import build_queue, build_worker
from gateway.tasks.states import RetryPolicy
from router.config import ConfigError
from router.router import Router
from tests.conftest import REDIS_URL, service_missing
from tests.fakes.openai_server import OpenAIFake
from tests.gateway.tasks.fixtures import (  # noqa: F401 (fixtures)
    RABBITMQ_URL,
    FakeClock,
    QueueFactory,
    _s3_credentials,
    clock,
    delete_declared,
    make_rabbitmq_queue,
    rabbitmq_queue_name,
)
from tests.gateway.tasks.rabbit_node import PrivateNode, free_port, server_script

ROOT = Path(__file__).resolve().parents[3]
S = TaskState
FAST_RETRIES = RetryPolicy(max_attempts=3, base_s=0.2, max_s=0.4, jitter=0)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateNode]:
    script = server_script()
    if script is None:
        service_missing("no rabbitmq-server on PATH: the RabbitMQ drills start a node of their own")
    private = PrivateNode(tmp_path_factory.mktemp("rabbitmq"), script)
    private.start()
    yield private
    private.crash()


def worker_config(tmp_path: Path, prefix: str, queue: str, url: str, **extra: Any) -> GatewayConfig:
    data = {
        "routing": {"probe_interval_s": 0},
        "data_dir": str(tmp_path / "data"),
        "models": extra.pop("models", {"m": {"deployments": [
            {"name": "m", "provider": "mock", "model": "echo"}]}}),
        "tasks": {"backend": "rabbitmq", "redis_url": REDIS_URL, "key_prefix": prefix,
                  "rabbitmq": {"url": url, "queue": queue}, **extra},
    }  # fmt: skip
    (tmp_path / "worker.yaml").write_text(yaml.safe_dump(data))
    return parse_config(data)


def start_worker(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "worker", "--config", str(config),
         "--concurrency", "1"],
        cwd=ROOT, env={**os.environ, "INFERGATE_LOG_LEVEL": "WARNING"}, stderr=subprocess.PIPE,
    )  # fmt: skip


async def wait_for(queue: TaskQueue, task_id: str, state: TaskState, limit: float = 20) -> Task:
    deadline = time.monotonic() + limit
    while (task := await queue.get("t1", task_id)).state is not state:
        assert time.monotonic() < deadline, f"still {task.state.name}, wanted {state.name}"
        await asyncio.sleep(0.05)
    return task


async def dead_letters(url: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """What sits in {queue}.dead (taken out)."""
    connection = await aio_pika.connect(url, timeout=5)
    async with connection:
        channel = await connection.channel()
        dead = await channel.get_queue(f"{queue}.dead", ensure=False)
        found = []
        while (message := await dead.get(fail=False, no_ack=True)) is not None:
            found.append(message)
        return found


# --- the drills, on the private node -----------------------------------------------------


@pytest.mark.slow
async def test_kill_9_mid_task_is_redelivered_and_completes_once(
    tmp_path: Path,
    node: PrivateNode,
    redis_prefix: str,
    rabbitmq_queue_name: str,
    make_rabbitmq_queue: QueueFactory,
    openai_fake: OpenAIFake,
) -> None:
    openai_fake.script.delay_s = 1.5  # the doomed worker is inside the model call when killed
    fake = {"name": "f", "provider": "openai", "model": "gpt-fake",
            "options": {"base_url": openai_fake.base_url}}  # fmt: skip
    models = {"fake": {"deployments": [fake]}}
    config = worker_config(tmp_path, redis_prefix, rabbitmq_queue_name, node.url, models=models)
    queue = make_rabbitmq_queue(url=node.url, clock=time.time, visibility_timeout_s=5)
    task = await queue.submit("t1", "generate.batch", {"model": "fake", "prompts": ["one two"]})
    doomed = start_worker(tmp_path / "worker.yaml")
    try:
        await wait_for(queue, task.id, S.PROCESSING)
        deadline = time.monotonic() + 20
        while not openai_fake.observed.bodies:  # its side effect has happened
            assert time.monotonic() < deadline, "the worker never called the model"
            await asyncio.sleep(0.02)
    finally:
        doomed.kill()  # SIGKILL: the broker sees the connection drop, nothing else
        doomed.communicate()
    assert doomed.returncode == -signal.SIGKILL

    router = Router(config, build_provider)
    survivor = build_worker(config.tasks, queue, load(), lambda: router, 2)
    running = asyncio.create_task(survivor.run())
    try:
        done = await wait_for(queue, task.id, S.SUCCESS)
    finally:
        survivor.stop(1)
        await running
        await router.aclose()
    # The client sees one run: one SUCCESS, one result, the lost attempt named.
    assert done.attempts == 2
    assert [t.reason for t in done.transitions].count("worker lost") == 1
    assert [t.state for t in done.transitions].count(S.SUCCESS) == 1
    assert done.result is not None and done.result["outputs"][0]["text"] == "Hello from the fake"
    # The side effect (the model call) happened twice: at least once, as documented.
    calls = len(openai_fake.observed.bodies)
    print(f"\nkill -9 drill: 1 result, {calls} model calls ({calls - 1} duplicate side effect)")
    assert calls == 2
    assert await queue.depth() == 0
    assert await dead_letters(node.url, rabbitmq_queue_name) == []


@pytest.mark.slow
async def test_broker_killed_and_restarted_loses_no_accepted_task(
    tmp_path: Path, node: PrivateNode, redis_prefix: str, rabbitmq_queue_name: str,
    make_rabbitmq_queue: QueueFactory,
) -> None:  # fmt: skip
    config = worker_config(tmp_path, redis_prefix, rabbitmq_queue_name, node.url)
    queue = make_rabbitmq_queue(url=node.url, clock=time.time)
    # The queues exist well before the crash, as in production: RabbitMQ 3.10 saves
    # a new quorum queue's registration lazily, so a crash moments after declaring
    # one would lose the queue itself. A graceful restart saves it.
    assert await queue.depth() == 0
    node.stop()
    node.start()
    accepted = [(await queue.submit("t1", "noop", {"n": n})).id for n in range(40)]

    node.crash()  # SIGKILL the broker: only what it confirmed (fsynced) may count
    with pytest.raises(QueueUnavailable, match="not accepted"):
        await queue.submit("t1", "noop", {"n": "during the outage"}, idempotency_key="k")
    node.start()

    listed = await queue.list_tasks("t1", None, 100)
    assert sorted(t.id for t in listed.tasks) == sorted(accepted)  # the refused one left nothing
    # The same queue object reconnects; the count grows while the queue replays its log.
    deadline = time.monotonic() + 10
    while (depth := await queue.depth()) < 40:  # every confirmed message kept
        assert time.monotonic() < deadline, f"{depth} of the 40 messages after the restart"
        await asyncio.sleep(0.2)
    assert depth == 40
    again = await queue.submit("t1", "noop", {"n": "after"}, idempotency_key="k")
    router = Router(config, build_provider)
    worker = build_worker(config.tasks, queue, load(), lambda: router, 4)
    running = asyncio.create_task(worker.run())
    try:
        for task_id in [*accepted, again.id]:
            done = await wait_for(queue, task_id, S.SUCCESS)
            assert done.attempts == 1
    finally:
        worker.stop(1)
        await running
        await router.aclose()
    assert await queue.depth() == 0


async def _poison(context: TaskContext, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    raise RuntimeError("poisoned")


@pytest.mark.slow
async def test_a_poison_task_reaches_the_dead_letter_queue_after_its_retries(
    tmp_path: Path, node: PrivateNode, redis_prefix: str, rabbitmq_queue_name: str,
    make_rabbitmq_queue: QueueFactory,
) -> None:  # fmt: skip
    config = worker_config(tmp_path, redis_prefix, rabbitmq_queue_name, node.url)
    queue = make_rabbitmq_queue(url=node.url, clock=time.time, policy=FAST_RETRIES)
    types = load()
    types.add(TaskType("poison", _poison))
    task = await queue.submit("t1", "poison", {})
    fine = await queue.submit("t1", "noop", {})
    router = Router(config, build_provider)
    worker = build_worker(config.tasks, queue, types, lambda: router, 2)
    running = asyncio.create_task(worker.run())
    try:
        dead = await wait_for(queue, task.id, S.DEAD_LETTERED)
        assert (await wait_for(queue, fine.id, S.SUCCESS)).attempts == 1
    finally:
        worker.stop(1)
        await running
        await router.aclose()
    assert (dead.attempts, dead.error) == (3, "RuntimeError: poisoned")
    states = [t.state for t in dead.transitions]
    assert states.count(S.RETRYING) == 2 and states.count(S.PROCESSING) == 3
    messages = await dead_letters(node.url, rabbitmq_queue_name)
    assert [m.body.decode() for m in messages] == [task.id]
    death = messages[0].headers["x-death"][0]  # type: ignore[index]
    assert (death["queue"], death["reason"]) == (rabbitmq_queue_name, "rejected")  # type: ignore[index,call-overload]


# --- on the shared broker ------------------------------------------------------------------


async def test_an_unconfirmed_submit_is_not_accepted(make_rabbitmq_queue: QueueFactory) -> None:
    down = make_rabbitmq_queue(url=f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    started = time.monotonic()
    with pytest.raises(QueueUnavailable, match="not accepted: task broker unavailable"):
        await down.submit("t1", "noop", {}, idempotency_key="once")
    assert time.monotonic() - started < 5
    assert (await down.list_tasks("t1", None, 10)).tasks == []  # withdrawn from Redis too
    up = make_rabbitmq_queue()  # the same state (key prefix), a broker that answers
    accepted = await up.submit("t1", "noop", {}, idempotency_key="once")
    assert [t.id for t in (await up.list_tasks("t1", None, 10)).tasks] == [accepted.id]
    assert await up.depth() == 1


async def test_retries_come_back_through_the_retry_queues_alone(
    make_rabbitmq_queue: QueueFactory, rabbitmq_queue_name: str
) -> None:
    queue = make_rabbitmq_queue(clock=time.time, policy=FAST_RETRIES)
    task = await queue.submit("t1", "noop", {})
    lease = (await queue.claim("w1", 1, 1))[0]
    for attempt in (1, 2):
        failed = await queue.fail(lease, f"boom {attempt}")
        assert failed.state is S.RETRYING
        assert await queue.claim("w1", 1, 0.1) == []  # not before its backoff (0.2 s, 0.4 s)
        back = await queue.claim("w1", 1, 3)  # no promote_due: the message expired back
        assert [b.task.attempts for b in back] == [attempt + 1]
        assert time.time() >= (failed.next_attempt_time or 0)
        lease = back[0]
    dead = await queue.fail(lease, "boom 3")
    assert dead.state is S.DEAD_LETTERED
    assert isinstance(queue, RabbitMQTaskQueue)
    assert f"{rabbitmq_queue_name}.retry.200ms" in queue.broker.declared
    assert [m.body.decode() for m in await dead_letters(RABBITMQ_URL, rabbitmq_queue_name)] == [
        task.id
    ]
    requeued = await queue.requeue("t1", task.id)
    assert requeued.state is S.PENDING
    again = (await queue.claim("w1", 1, 1))[0]
    assert (await queue.complete(again, {"ok": 1})).state is S.SUCCESS


async def test_the_queues_are_durable_quorum_queues(
    make_rabbitmq_queue: QueueFactory, rabbitmq_queue_name: str
) -> None:
    queue = make_rabbitmq_queue()
    await queue.submit("t1", "noop", {})
    work: dict[str, Any] = {
        "x-overflow": "reject-publish",
        "x-dead-letter-strategy": "at-least-once",
        "x-dead-letter-exchange": f"{rabbitmq_queue_name}.dead-letter",
    }
    dead: dict[str, Any] = {"x-overflow": "drop-head", "x-max-length": 100_000}  # the newest
    connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
    async with connection:
        for name, arguments in ((rabbitmq_queue_name, work), (f"{rabbitmq_queue_name}.dead", dead)):
            channel = await connection.channel()
            declared = await channel.declare_queue(
                name, durable=True, arguments={**arguments, "x-queue-type": "quorum"}
            )  # the same: accepted
            assert declared.durable
            with pytest.raises(ChannelPreconditionFailed, match="'x-queue-type'"):
                await channel.declare_queue(
                    name, durable=True, arguments={**arguments, "x-queue-type": "classic"}
                )


async def test_a_cancelled_tasks_message_is_dropped(make_rabbitmq_queue: QueueFactory) -> None:
    queue = make_rabbitmq_queue()
    task = await queue.submit("t1", "noop", {})
    await queue.cancel("t1", task.id)
    assert await queue.claim("w1", 1, 0.5) == []
    assert await queue.depth() == 0  # taken and acknowledged, nothing ran
    with pytest.raises(TaskNotFound):
        await queue.get("t2", task.id)


async def test_a_fixed_prefetch_bounds_what_one_process_holds(
    make_rabbitmq_queue: QueueFactory,
) -> None:
    queue = make_rabbitmq_queue(prefetch=1)
    for n in range(3):
        await queue.submit("t1", "noop", {"n": n})
    first = await queue.claim("w1", 3, 1)
    assert len(first) == 1  # the broker holds the rest back until it is acknowledged
    assert await queue.claim("w1", 3, 0.2) == []
    await queue.complete(first[0], {})
    assert len(await queue.claim("w1", 3, 1)) == 1


def test_task_timeout_must_stay_below_the_brokers_consumer_timeout() -> None:
    models = {"m": {"deployments": [{"name": "a", "provider": "mock", "model": "echo"}]}}
    with pytest.raises(ConfigError, match=r"task_timeout_s \(3600\) \+ 120 s must not exceed"):
        parse_config({"models": models, "tasks": {"backend": "rabbitmq", "task_timeout_s": 3600}})
    for task_timeout_s, accepted in ((1680, True), (1700, False)):  # the margin: 120 s
        tasks = {"backend": "rabbitmq", "task_timeout_s": task_timeout_s}
        if accepted:
            assert parse_config({"models": models, "tasks": tasks}).tasks.task_timeout_s == 1680
        else:
            with pytest.raises(ConfigError, match="consumer_timeout_s \\(1800\\)"):
                parse_config({"models": models, "tasks": tasks})
    longer = {
        "backend": "rabbitmq",
        "task_timeout_s": 3600,
        "rabbitmq": {"consumer_timeout_s": 7200},
    }
    assert parse_config({"models": models, "tasks": longer}).tasks.concurrency == 0


@pytest.mark.parametrize(
    ("rabbitmq", "field"),
    [({"url": "http://127.0.0.1:5672/"}, "url"), ({"queue": "amq.tasks"}, "queue")],
)
def test_a_bad_broker_setting_names_its_field(rabbitmq: dict[str, str], field: str) -> None:
    models = {"m": {"deployments": [{"name": "a", "provider": "mock", "model": "echo"}]}}
    with pytest.raises(ConfigError, match=f"tasks.rabbitmq.{field}"):
        parse_config({"models": models, "tasks": {"backend": "rabbitmq", "rabbitmq": rabbitmq}})


def test_build_queue_picks_rabbitmq(tmp_path: Path, clock: FakeClock) -> None:
    models = {"m": {"deployments": [{"name": "a", "provider": "mock", "model": "echo"}]}}
    config = parse_config({"models": models, "tasks": {"backend": "rabbitmq"}})
    queue = build_queue(config.tasks, tmp_path, clock)
    assert isinstance(queue, RabbitMQTaskQueue)
    assert queue.broker.queue == "infergate.tasks"


def test_the_readme_tasks_config_is_valid_with_every_backend() -> None:
    section = (ROOT / "README.md").read_text().split("\n## Tasks\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    tasks = yaml.safe_load(block)["tasks"]
    models = {"m": {"deployments": [{"name": "a", "provider": "mock", "model": "echo"}]}}
    for backend in ("memory", "redis", "rabbitmq"):
        config = parse_config({"models": models, "tasks": {**tasks, "backend": backend}})
        assert config.tasks.backend == backend
    assert config.tasks.rabbitmq.queue == "infergate.tasks"


def test_a_fixed_prefetch_above_the_concurrency_is_refused(tmp_path: Path) -> None:
    models = {"m": {"deployments": [{"name": "a", "provider": "mock", "model": "echo"}]}}
    tasks = {"backend": "rabbitmq", "in_process_workers": 2, "rabbitmq": {"prefetch": 3}}
    with pytest.raises(ConfigError, match=r"prefetch \(3\) must not exceed .* \(2\)"):
        parse_config({"models": models, "tasks": tasks})
    config = parse_config({"models": models, "tasks": {**tasks, "in_process_workers": 0}})
    queue = build_queue(config.tasks, tmp_path)
    with pytest.raises(ConfigError, match=r"tasks.rabbitmq.prefetch \(3\) .* \(2\)"):
        build_worker(config.tasks, queue, load(), lambda: Router(config, build_provider), 2)
    assert build_worker(config.tasks, queue, load(), lambda: None, 3).concurrency == 3  # type: ignore[arg-type,return-value]


# --- the reviewed defects: each shown on a real broker and a real Redis ---------------------


async def test_a_store_error_while_claiming_gives_the_message_back_and_hands_out_the_rest(
    make_rabbitmq_queue: QueueFactory, redis_prefix: str
) -> None:
    queue = make_rabbitmq_queue()
    assert isinstance(queue, RabbitMQTaskQueue)
    tasks = [await queue.submit("t1", "noop", {"n": n}) for n in range(3)]
    redis = queue._records.redis
    key = f"{redis_prefix}task:{tasks[1].id}"
    record = await redis.get(key)
    await redis.delete(key)
    await redis.hset(key, "not", "a record")  # reading it fails: WRONGTYPE, a store error
    leases = await queue.claim("w1", 3, 2)
    assert sorted(lease.task.id for lease in leases) == sorted([tasks[0].id, tasks[2].id])
    await redis.delete(key)
    await redis.set(key, record)
    again = await queue.claim("w1", 3, 2)  # its message came back: nothing holds it
    assert [lease.task.id for lease in again] == [tasks[1].id]
    for lease in [*leases, *again]:
        assert (await queue.complete(lease, {})).state is S.SUCCESS
    assert await queue.depth() == 0


async def test_a_repeated_submit_confirms_a_pending_one_which_is_then_never_withdrawn(
    make_rabbitmq_queue: QueueFactory, redis_prefix: str
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()  # a broker that takes the connection and never answers
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hung = make_rabbitmq_queue(url=f"amqp://guest:guest@127.0.0.1:{port}/")
    up = make_rabbitmq_queue()
    try:
        first = asyncio.create_task(hung.submit("t1", "noop", {}, idempotency_key="k"))
        assert isinstance(up, RabbitMQTaskQueue)
        for _ in range(500):  # until the first call stored it; it waits for the broker
            if await up._records.redis.exists(f"{redis_prefix}key:t1:k"):
                break
            await asyncio.sleep(0.01)
        repeat = await up.submit("t1", "noop", {}, idempotency_key="k")
        assert await up.depth() == 1  # answered only once its message was confirmed
        accepted = await first  # its own publish timed out: not withdrawn, accepted
        assert accepted.id == repeat.id
    finally:
        server.close()
    lease = (await up.claim("w1", 1, 2))[0]
    assert lease.task.id == repeat.id
    assert (await up.complete(lease, {})).state is S.SUCCESS


async def test_unsent_messages_are_sent_by_housekeeping(
    make_rabbitmq_queue: QueueFactory, clock: FakeClock
) -> None:
    """A gateway that died after storing a task, before its publish."""
    queue = make_rabbitmq_queue()
    assert isinstance(queue, RabbitMQTaskQueue)
    task = states.new_task("t1", "noop", {}, "", clock())
    await queue._records.create(task, queue._unsent, stream=False)
    await queue.promote_due()
    assert await queue.depth() == 0  # its publisher may still be at it
    clock.now += 11
    await queue.promote_due()
    assert await queue.depth() == 1
    assert await queue._records.redis.zcard(queue._unsent) == 0
    lease = (await queue.claim("w1", 1, 2))[0]
    assert (lease.task.id, lease.task.attempts) == (task.id, 1)


async def test_a_redelivered_duplicate_of_a_running_task_is_dropped(
    make_rabbitmq_queue: QueueFactory,
) -> None:
    running_here = make_rabbitmq_queue()
    elsewhere = make_rabbitmq_queue()
    assert isinstance(elsewhere, RabbitMQTaskQueue)
    task = await running_here.submit("t1", "noop", {})
    lease = (await running_here.claim("w1", 1, 2))[0]
    await elsewhere.broker.publish(task.id)  # a second message (say, housekeeping's resend)
    duplicate = (await elsewhere.broker.receive(1, 2, 1))[0]
    await elsewhere.broker.give_back(duplicate)  # so it comes back marked redelivered
    assert await elsewhere.claim("w2", 1, 1) == []  # not the message the attempt started from
    assert await elsewhere.depth() == 0
    done = await running_here.complete(lease, {})
    assert (done.state, done.attempts) == (S.SUCCESS, 1)


async def test_a_later_larger_claim_gets_more_unacknowledged_messages(
    make_rabbitmq_queue: QueueFactory,
) -> None:
    queue = make_rabbitmq_queue()
    for n in range(4):
        await queue.submit("t1", "noop", {"n": n})
    assert len(await queue.claim("w1", 1, 2)) == 1
    more: list[Any] = []
    deadline = time.monotonic() + 3
    while len(more) < 3 and time.monotonic() < deadline:
        more += await queue.claim("w1", 3 - len(more), 0.5)
    assert len(more) == 3


async def test_the_dead_letter_queue_keeps_the_newest(rabbitmq_queue_name: str) -> None:
    broker = Broker(RABBITMQ_URL, rabbitmq_queue_name, dead_max=2)
    try:
        for n in range(3):
            await broker.publish(f"task-{n}")
            (delivery,) = await broker.receive(1, 2, 1)
            await broker.dead_letter(delivery)
        deadline = time.monotonic() + 5
        while (bodies := await dead_bodies(RABBITMQ_URL, rabbitmq_queue_name)) != [
            "task-1",
            "task-2",
        ]:
            assert time.monotonic() < deadline, bodies
            await asyncio.sleep(0.1)
    finally:
        await broker.aclose()
        await delete_declared(RABBITMQ_URL, broker.declared)


async def test_a_requeued_task_leaves_the_dead_letter_queue(
    make_rabbitmq_queue: QueueFactory, rabbitmq_queue_name: str
) -> None:
    queue = make_rabbitmq_queue(policy=RetryPolicy(max_attempts=1, base_s=1, max_s=1, jitter=0))
    tasks = [await queue.submit("t1", "noop", {"n": n}) for n in range(2)]
    for lease in await queue.claim("w1", 2, 2):
        assert (await queue.fail(lease, "boom")).state is S.DEAD_LETTERED
    deadline = time.monotonic() + 5
    while len(await dead_bodies(RABBITMQ_URL, rabbitmq_queue_name)) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await queue.requeue("t1", tasks[0].id)
    assert await dead_bodies(RABBITMQ_URL, rabbitmq_queue_name) == [tasks[1].id]
    lease = (await queue.claim("w1", 1, 2))[0]
    assert (lease.task.id, lease.task.attempts) == (tasks[0].id, 1)


async def test_a_dead_letter_queue_declared_by_an_older_version_is_kept(
    make_rabbitmq_queue: QueueFactory, rabbitmq_queue_name: str
) -> None:
    older: dict[str, Any] = {
        "x-queue-type": "quorum",
        "x-overflow": "reject-publish",
        "x-max-length": 100_000,
    }
    connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(f"{rabbitmq_queue_name}.dead", durable=True, arguments=older)
    queue = make_rabbitmq_queue()
    task = await queue.submit("t1", "noop", {})  # no PRECONDITION_FAILED: used as it is
    assert [lease.task.id for lease in await queue.claim("w1", 1, 2)] == [task.id]


async def dead_bodies(url: str, queue: str) -> list[str]:
    """What sits in {queue}.dead, left there (looked at, then returned)."""
    connection = await aio_pika.connect(url, timeout=5)
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(f"{queue}.dead", passive=True)
        count = dead.declaration_result.message_count or 0
        return [(await dead.get(no_ack=False)).body.decode() for _ in range(count)]


# --- the reviewed defects on the private node ----------------------------------------------


@pytest.mark.slow
async def test_one_task_past_consumer_timeout_takes_back_only_its_own(
    node: PrivateNode, make_rabbitmq_queue: QueueFactory
) -> None:
    node.ctl("eval", "application:set_env(rabbit, consumer_timeout, 2000).")
    node.ctl("eval", "application:set_env(rabbit, channel_tick_interval, 100).")
    try:
        worker = make_rabbitmq_queue(url=node.url, clock=time.time, visibility_timeout_s=60)
        other = make_rabbitmq_queue(url=node.url, clock=time.time, visibility_timeout_s=60)
        late = await worker.submit("t1", "noop", {"n": "late"})
        (late_lease,) = await worker.claim("w1", 2, 2)  # two slots; held past the timeout
        await asyncio.sleep(1)
        prompt = await worker.submit("t1", "noop", {"n": "prompt"})
        (prompt_lease,) = await worker.claim("w1", 1, 2)
        await asyncio.sleep(1.6)  # past the late one's 2 s, within the prompt one's
        taken_over = await other.claim("w2", 2, 0.3)
        assert [lease.task.id for lease in taken_over] == [late.id]  # not the prompt one
        done = await worker.complete(prompt_lease, {})
        assert (done.state, done.attempts) == (S.SUCCESS, 1)
        assert (await other.complete(taken_over[0], {})).attempts == 2
        assert (await worker.complete(late_lease, {})).state is S.SUCCESS  # the first result
        assert await other.depth() == 0
    finally:
        node.ctl("eval", "application:set_env(rabbit, consumer_timeout, 1800000).")
        node.ctl("eval", "application:set_env(rabbit, channel_tick_interval, 60000).")
    assert prompt.id != late.id


@pytest.mark.slow
async def test_after_a_broker_restart_a_running_attempt_keeps_its_task(
    node: PrivateNode, make_rabbitmq_queue: QueueFactory
) -> None:
    queue = make_rabbitmq_queue(url=node.url, clock=time.time, visibility_timeout_s=60)
    task = await queue.submit("t1", "noop", {})
    (lease,) = await queue.claim("w1", 1, 2)
    node.stop()
    node.start()
    deadline = time.monotonic() + 10
    while True:  # reconnects; its message comes back to it, and to the running attempt
        with contextlib.suppress(QueueUnavailable):
            assert await queue.claim("w1", 1, 0.5) == []
            if await queue.depth() == 0:
                break
        assert time.monotonic() < deadline
    done = await queue.complete(lease, {})
    assert (done.state, done.attempts) == (S.SUCCESS, 1)
    assert "worker lost" not in [t.reason for t in done.transitions]
    assert task.id == done.id


@pytest.mark.slow
async def test_a_nacked_submit_is_not_accepted(
    node: PrivateNode,
    make_rabbitmq_queue: QueueFactory,
    rabbitmq_queue_name: str,
    redis_prefix: str,
) -> None:
    queue = make_rabbitmq_queue(url=node.url)
    first = await queue.submit("t1", "noop", {})
    limit = '{"max-length": 0}'  # over it already: the first one's message
    node.ctl("set_policy", "nack", f"^{rabbitmq_queue_name}$", limit, "--apply-to", "queues")
    try:
        with pytest.raises(QueueUnavailable, match="not accepted"):
            await queue.submit("t1", "noop", {"n": 2}, idempotency_key="k")  # the queue refuses it
    finally:
        node.ctl("clear_policy", "nack")
    assert [t.id for t in (await queue.list_tasks("t1", None, 10)).tasks] == [first.id]
    assert isinstance(queue, RabbitMQTaskQueue)
    assert not await queue._records.redis.exists(f"{redis_prefix}key:t1:k")  # withdrawn too
