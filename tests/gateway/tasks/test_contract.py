# ruff: noqa: F811  (pytest fixtures imported from fixtures.py are parameters here)
"""One contract suite for every TaskQueue: the in-process one, Redis (a real
server on 127.0.0.1:6379, a unique key prefix per test) and RabbitMQ (a real
broker on 127.0.0.1:5672, a unique queue name per test, its state in Redis)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.tasks.errors import IllegalTransition, TaskNotFound
from gateway.tasks.model import Task, TaskState
from gateway.tasks.queue import Lease, TaskQueue
from tests.gateway.tasks.fixtures import (  # noqa: F401 (fixtures)
    POLICY,
    VISIBILITY_S,
    FakeClock,
    QueueFactory,
    _s3_credentials,
    clock,
    make_memory_queue,
    make_rabbitmq_queue,
    make_redis_queue,
    rabbitmq_queue_name,
)

S = TaskState


@pytest.fixture(params=["memory", "redis", "rabbitmq"])
def queue(request: pytest.FixtureRequest) -> TaskQueue:
    make: QueueFactory = request.getfixturevalue(f"make_{request.param}_queue")
    return make()


async def claim_one(queue: TaskQueue, consumer: str = "w1") -> Lease:
    leases = await queue.claim(consumer, 1, 0.5)
    assert len(leases) == 1, leases
    return leases[0]


async def test_submit_then_get_returns_the_pending_task(queue: TaskQueue, clock: FakeClock) -> None:
    task = await queue.submit("t1", "noop", {"n": 1, "s": "é"})
    assert (task.state, task.type, task.tenant, dict(task.payload)) == (
        S.PENDING,
        "noop",
        "t1",
        {"n": 1, "s": "é"},
    )
    assert task.create_time == clock.now
    assert await queue.get("t1", task.id) == task


async def test_another_tenants_task_is_not_found(queue: TaskQueue) -> None:
    task = await queue.submit("t1", "noop", {})
    for call in (queue.get, queue.cancel, queue.requeue):
        with pytest.raises(TaskNotFound):
            await call("t2", task.id)
    with pytest.raises(TaskNotFound):
        await queue.get("t1", "0123abcd")
    assert (await queue.list_tasks("t2", None, 10)).tasks == []


async def test_a_repeated_idempotency_key_returns_the_same_task(queue: TaskQueue) -> None:
    first = await queue.submit("t1", "noop", {"n": 1}, idempotency_key="k1")
    again = await queue.submit("t1", "noop", {"n": 2}, idempotency_key="k1")
    other_tenant = await queue.submit("t2", "noop", {"n": 1}, idempotency_key="k1")
    other_key = await queue.submit("t1", "noop", {"n": 1}, idempotency_key="k2")
    assert again.id == first.id and dict(again.payload) == {"n": 1}
    assert len({first.id, other_tenant.id, other_key.id}) == 3
    assert await queue.depth() == 3  # the repeat queued nothing


async def test_claim_complete_and_the_result_is_kept(queue: TaskQueue, clock: FakeClock) -> None:
    task = await queue.submit("t1", "noop", {})
    clock.now += 1
    lease = await claim_one(queue)
    assert (lease.task.id, lease.task.state, lease.task.attempts) == (task.id, S.PROCESSING, 1)
    assert await queue.depth() == 0
    clock.now += 2
    done = await queue.complete(lease, {"answer": 42})
    assert done.state is S.SUCCESS and done.result == {"answer": 42}
    assert done.result_uri.startswith("file://")
    stored = await queue.get("t1", task.id)
    assert stored.result == {"answer": 42} and stored.update_time - stored.create_time == 3
    assert [t.state for t in stored.transitions] == [S.PENDING, S.PROCESSING, S.SUCCESS]
    assert await queue.claim("w1", 1, 0) == []


async def test_a_result_is_written_once(queue: TaskQueue) -> None:
    await queue.submit("t1", "noop", {})
    lease = await claim_one(queue)
    await queue.complete(lease, {"run": 1})
    again = await queue.complete(lease, {"run": 2})
    late_failure = await queue.fail(lease, "late")
    assert again.result == {"run": 1} and late_failure.state is S.SUCCESS
    assert (await queue.get("t1", lease.task.id)).result == {"run": 1}


async def test_cancel_a_pending_task(queue: TaskQueue) -> None:
    task = await queue.submit("t1", "noop", {})
    cancelled = await queue.cancel("t1", task.id)
    assert cancelled.state is S.CANCELLED
    assert await queue.claim("w1", 5, 0) == []  # nothing left to run
    assert (await queue.get("t1", task.id)).state is S.CANCELLED
    with pytest.raises(IllegalTransition):
        await queue.cancel("t1", task.id)


async def test_a_running_task_cannot_be_cancelled(queue: TaskQueue) -> None:
    task = await queue.submit("t1", "noop", {})
    await claim_one(queue)
    with pytest.raises(IllegalTransition, match="PROCESSING: cannot become CANCELLED"):
        await queue.cancel("t1", task.id)


async def test_always_failing_task_follows_the_backoff_schedule_to_dead_letters(
    queue: TaskQueue, clock: FakeClock
) -> None:
    task = await queue.submit("t1", "noop", {})
    for attempt in (1, 2):
        lease = await claim_one(queue)
        assert lease.task.attempts == attempt
        failed = await queue.fail(lease, f"boom {attempt}")
        assert failed.state is S.RETRYING and failed.next_attempt_time is not None
        delay = failed.next_attempt_time - clock.now
        nominal = POLICY.nominal_delay(attempt)  # 10 s, then 20 s
        assert nominal * (1 - POLICY.jitter) <= delay <= nominal
        clock.now += delay - 0.01
        assert await queue.promote_due() == 0
        assert await queue.claim("w1", 1, 0) == []  # not due yet
        clock.now += 0.02
        assert await queue.promote_due() == 1
    lease = await claim_one(queue)
    dead = await queue.fail(lease, "boom 3")
    assert (dead.state, dead.attempts, dead.error) == (S.DEAD_LETTERED, 3, "boom 3")
    listed = await queue.list_tasks("t1", S.DEAD_LETTERED, 10)
    assert [t.id for t in listed.tasks] == [task.id]
    states = [t.state for t in (await queue.get("t1", task.id)).transitions]
    assert states == [
        S.PENDING,
        *[S.PROCESSING, S.RETRYING, S.PENDING] * 2,
        S.PROCESSING,
        S.DEAD_LETTERED,
    ]

    requeued = await queue.requeue("t1", task.id)
    assert (requeued.state, requeued.attempts) == (S.PENDING, 0)
    assert (await queue.list_tasks("t1", S.DEAD_LETTERED, 10)).tasks == []
    lease = await claim_one(queue)
    assert (await queue.complete(lease, {"ok": True})).state is S.SUCCESS


async def test_a_permanent_failure_ends_in_failure(queue: TaskQueue) -> None:
    await queue.submit("t1", "noop", {})
    failed = await queue.fail(await claim_one(queue), "bad payload", retryable=False)
    assert failed.state is S.FAILURE and failed.error == "bad payload"
    assert (await queue.get("t1", failed.id)).state is S.FAILURE


async def test_a_released_task_runs_again_at_once(queue: TaskQueue) -> None:
    await queue.submit("t1", "noop", {})
    released = await queue.release(await claim_one(queue, "stopping"))
    assert (released.state, released.attempts) == (S.PENDING, 0)
    again = await claim_one(queue, "other")
    assert (again.task.state, again.task.attempts) == (S.PROCESSING, 1)


async def test_a_silent_workers_task_is_taken_over(queue: TaskQueue, clock: FakeClock) -> None:
    task = await queue.submit("t1", "noop", {})
    await claim_one(queue, "dies")
    assert await queue.claim("other", 1, 0) == []  # still leased
    clock.now += VISIBILITY_S + 1  # the in-process queue's leases run on the clock,
    await asyncio.sleep(VISIBILITY_S + 0.05)  # Redis's on its own idle time
    lease = await claim_one(queue, "other")
    assert (lease.task.id, lease.task.attempts) == (task.id, 2)
    assert [t.reason for t in lease.task.transitions][-2] == "worker lost"
    assert (await queue.complete(lease, {"by": "other"})).result == {"by": "other"}


async def test_a_heartbeat_keeps_the_lease(queue: TaskQueue, clock: FakeClock) -> None:
    await queue.submit("t1", "noop", {})
    lease = await claim_one(queue, "slow")
    for _ in range(3):
        clock.now += VISIBILITY_S * 0.6
        await asyncio.sleep(VISIBILITY_S * 0.6)
        await queue.extend(lease)
        assert await queue.claim("other", 1, 0) == []


async def test_list_pages_by_state_in_creation_order(queue: TaskQueue, clock: FakeClock) -> None:
    ids = []
    for _ in range(5):
        clock.now += 1
        ids.append((await queue.submit("t1", "noop", {})).id)
    await queue.submit("t2", "noop", {})
    await queue.cancel("t1", ids[1])
    page = await queue.list_tasks("t1", None, 2)
    assert [t.id for t in page.tasks] == ids[:2] and page.next_token
    seen = [t.id for t in page.tasks]
    while page.next_token:
        page = await queue.list_tasks("t1", None, 2, page.next_token)
        seen += [t.id for t in page.tasks]
    assert seen == ids
    pending = await queue.list_tasks("t1", S.PENDING, 10)
    assert [t.id for t in pending.tasks] == [ids[0], *ids[2:]] and pending.next_token == ""
    cancelled = await queue.list_tasks("t1", S.CANCELLED, 10)
    assert [t.id for t in cancelled.tasks] == [ids[1]]
    everyone = await queue.list_tasks(None, S.PENDING, 10)
    assert len(everyone.tasks) == 5


async def test_watch_streams_each_change_until_settled(queue: TaskQueue) -> None:
    task = await queue.submit("t1", "noop", {})
    seen: asyncio.Queue[Task] = asyncio.Queue()

    async def watch() -> None:
        async for update in queue.watch("t1", task.id):
            await seen.put(update)

    watcher = asyncio.create_task(watch())
    try:
        assert (await asyncio.wait_for(seen.get(), 5)).state is S.PENDING
        lease = await claim_one(queue)
        assert (await asyncio.wait_for(seen.get(), 5)).state is S.PROCESSING
        await queue.complete(lease, {"x": 1})
        update = await asyncio.wait_for(seen.get(), 5)
        assert update.state is S.SUCCESS and update.result == {"x": 1}
        await asyncio.wait_for(watcher, 5)  # it ended by itself
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def test_watch_of_an_unknown_task_fails(queue: TaskQueue) -> None:
    with pytest.raises(TaskNotFound):
        async for _ in queue.watch("t1", "00ff"):
            pass


async def test_get_finds_archived_tasks_the_hot_store_dropped(
    make_memory_queue: QueueFactory, clock: FakeClock
) -> None:
    queue = make_memory_queue(ttl_s=10)
    task = await queue.submit("t1", "noop", {})
    await queue.complete(await claim_one(queue), {"kept": True})
    clock.now += 120
    await queue.submit("t1", "noop", {})  # submits forget what is past the TTL
    assert task.id not in {t.id for t in (await queue.list_tasks("t1", None, 10)).tasks}
    archived = await queue.get("t1", task.id)
    assert archived.state is S.SUCCESS and archived.result == {"kept": True}
    with pytest.raises(TaskNotFound):
        await queue.get("t2", task.id)
