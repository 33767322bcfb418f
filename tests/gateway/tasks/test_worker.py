# ruff: noqa: F811  (pytest fixtures imported from fixtures.py are parameters here)
"""The Worker over the in-process queue: how each way an attempt can end is
recorded, metrics, and a graceful stop."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import REGISTRY

from gateway import identity
from gateway.tasks.errors import TaskFailed
from gateway.tasks.handlers import ModelCall, TaskContext, TaskType, TaskTypes
from gateway.tasks.model import Task, TaskState
from gateway.tasks.queue import TaskQueue
from gateway.tasks.worker import Worker
from tests.gateway.tasks.fixtures import (  # noqa: F401 (fixtures)
    QueueFactory,
    _s3_credentials,
    clock,
    make_memory_queue,
)

S = TaskState


async def ok(ctx: TaskContext, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"echo": payload.get("x"), "attempt": ctx.task.attempts}


async def whoami(ctx: TaskContext, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"tenant": identity.current().tenant}


async def boom(ctx: TaskContext, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    raise RuntimeError("handler bug")


async def refuse(ctx: TaskContext, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    raise TaskFailed("bad document", retryable=False)


async def hang(ctx: TaskContext, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    await asyncio.sleep(60)
    return {}


def types() -> TaskTypes:
    registry = TaskTypes()
    handlers = (("ok", ok), ("boom", boom), ("refuse", refuse), ("hang", hang), ("whoami", whoami))
    for name, run in handlers:
        registry.add(TaskType(name, run))
    return registry


async def run_until(queue: TaskQueue, task_id: str, states: set[TaskState], **options: Any) -> Task:
    worker = Worker(queue, types(), lambda: None, poll_s=0.05, **options)  # type: ignore[arg-type, return-value]
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            async for task in queue.watch("t1", task_id):
                if task.state in states:
                    return task
        raise AssertionError("the watch ended first")
    finally:
        worker.stop(0)
        await running


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def queue(make_memory_queue: QueueFactory) -> TaskQueue:
    return make_memory_queue()


async def test_a_success_is_recorded_and_counted(queue: TaskQueue) -> None:
    before = sample("infergate_tasks_finished_total", {"type": "ok", "state": "SUCCESS"})
    task = await queue.submit("t1", "ok", {"x": 7})
    done = await run_until(queue, task.id, {S.SUCCESS})
    assert done.result == {"echo": 7, "attempt": 1}
    after = sample("infergate_tasks_finished_total", {"type": "ok", "state": "SUCCESS"})
    assert after == before + 1
    assert sample("infergate_task_seconds_count", {"type": "ok"}) >= 1


async def test_a_handler_runs_as_its_tasks_tenant(queue: TaskQueue) -> None:
    # What it calls is scoped by the tenant (the request cache): never the default's.
    task = await queue.submit("t1", "whoami", {})
    done = await run_until(queue, task.id, {S.SUCCESS})
    assert done.result == {"tenant": "t1"}


@pytest.mark.parametrize(
    ("kind", "state", "error"),
    [
        ("boom", S.RETRYING, "RuntimeError: handler bug"),
        ("refuse", S.FAILURE, "bad document"),
        ("unknown", S.RETRYING, "this worker has no handler for task type 'unknown'"),
    ],
)
async def test_how_a_failed_attempt_is_recorded(
    queue: TaskQueue, kind: str, state: TaskState, error: str
) -> None:
    retries = sample("infergate_tasks_retries_total", {"type": kind})
    task = await queue.submit("t1", kind, {})
    failed = await run_until(queue, task.id, {S.RETRYING, S.FAILURE})
    assert (failed.state, failed.error) == (state, error)
    counted = sample("infergate_tasks_retries_total", {"type": kind}) - retries
    assert counted == (1 if state is S.RETRYING else 0)


async def test_an_attempt_past_its_timeout_is_retried(queue: TaskQueue) -> None:
    task = await queue.submit("t1", "hang", {})
    failed = await run_until(queue, task.id, {S.RETRYING}, task_timeout_s=0.1)
    assert failed.error == "attempt timed out after 0.1s"


async def test_a_stopping_worker_releases_what_does_not_finish_in_the_grace(
    queue: TaskQueue,
) -> None:
    task = await queue.submit("t1", "hang", {})
    worker = Worker(queue, types(), lambda: None, poll_s=0.05)  # type: ignore[arg-type, return-value]
    running = asyncio.create_task(worker.run())
    async with asyncio.timeout(10):
        async for update in queue.watch("t1", task.id):
            if update.state is S.PROCESSING:
                break
    worker.stop(grace_s=0.05)
    await asyncio.wait_for(running, 5)
    released = await queue.get("t1", task.id)
    assert (released.state, released.attempts) == (S.PENDING, 0)
    assert released.transitions[-1].reason == "released"


class Ledger:
    """A UsageSink that keeps what it was given, and what it had written when
    each flush ran (with the task's state then)."""

    def __init__(self, queue: TaskQueue, *, fail: bool = False) -> None:
        self.queue = queue
        self.fail = fail
        self.task_id = ""  # the task run_with submits
        self.queued: list[ModelCall] = []
        self.written: list[ModelCall] = []
        self.state_at_flush: list[TaskState] = []

    def record(self, task: Task, call: ModelCall) -> None:
        self.queued.append(call)

    async def flush(self) -> None:
        self.state_at_flush.append((await self.queue.get("t1", self.task_id)).state)
        if self.fail:
            raise ConnectionError("store down")
        self.written += self.queued
        self.queued = []


async def calls_a_model(ctx: TaskContext, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    ctx.used(ModelCall("chat", "chat-a", 3, 8, 1))
    return {}


async def run_with(queue: TaskQueue, ledger: Ledger, states: set[TaskState]) -> Task:
    registry = TaskTypes()
    registry.add(TaskType("model", calls_a_model))
    task = await queue.submit("t1", "model", {})
    ledger.task_id = task.id
    worker = Worker(queue, registry, lambda: None, poll_s=0.05, usage=ledger)  # type: ignore[arg-type, return-value]
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            async for seen in queue.watch("t1", task.id):
                if seen.state in states:
                    return seen
        raise AssertionError("the watch ended first")
    finally:
        worker.stop(0)
        await running


async def test_a_tasks_usage_is_written_before_its_result_is_saved(queue: TaskQueue) -> None:
    ledger = Ledger(queue)
    done = await run_with(queue, ledger, {S.SUCCESS})
    assert done.state is S.SUCCESS
    assert ledger.written == [ModelCall("chat", "chat-a", 3, 8, 1)] and not ledger.queued
    assert ledger.state_at_flush == [S.PROCESSING]  # the result was not saved yet


async def test_a_result_is_not_saved_while_its_usage_cannot_be_written(queue: TaskQueue) -> None:
    ledger = Ledger(queue, fail=True)
    retrying = await run_with(queue, ledger, {S.RETRYING, S.SUCCESS})
    assert retrying.state is S.RETRYING
    assert retrying.error == "its usage records could not be written"
    assert ledger.queued and not ledger.written  # kept for the next flush
