"""The `task` node over QueueTasks and the in-memory task queue; the tasks are
claimed and finished by hand, as a worker would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.apps.workflows.events import FAILED, SUCCEEDED, NodeFinished, RunFinished
from gateway.apps.workflows.tasks import QueueTasks
from gateway.tasks import handlers
from gateway.tasks.archive import LocalResultStore
from gateway.tasks.errors import InvalidTask
from gateway.tasks.memory import MemoryTaskQueue
from gateway.tasks.model import TaskState
from gateway.tasks.states import RetryPolicy
from tests.gateway.apps.workflows.helpers import run, services


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[MemoryTaskQueue]:
    q = MemoryTaskQueue(LocalResultStore(tmp_path / "results"), RetryPolicy(max_attempts=2))
    yield q
    await q.aclose()


def workflow(**config: Any) -> dict[str, Any]:
    return {
        "inputs": {"text": {"type": "string", "required": True}},
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "job", "type": "task", "config": {
                "type": "embed.batch",
                "payload": {"model": "emb", "inputs": ["{{ start.text }}", "fixed"], "n": 2},
                **config,
            }},
            {"id": "after", "type": "template", "config": {"template": "{{ job.result.vectors }}"}},
        ],
        "edges": [{"from": "start", "to": "job"}, {"from": "job", "to": "after"}],
        "outputs": {
            "id": "{{ job.task_id }}", "state": "{{ job.state }}", "result": "{{ job.result }}",
        },
    }  # fmt: skip


async def worker(queue: MemoryTaskQueue, error: str = "") -> dict[str, Any]:
    """Claim one task and finish it: complete it, or fail it for good with `error`."""
    [lease] = await queue.claim("w1", 1, wait_s=5.0)
    if error:
        await queue.fail(lease, error, retryable=False)
    else:
        await queue.complete(lease, {"vectors": len(lease.task.payload["inputs"])})
    return {"tenant": lease.task.tenant, "type": lease.task.type, "payload": lease.task.payload}


async def test_submits_the_resolved_payload_and_waits_for_the_result(
    queue: MemoryTaskQueue,
) -> None:
    svc = services(tasks=QueueTasks(queue, handlers.load()))
    events, seen = await asyncio.gather(run(workflow(), {"text": "hello"}, svc), worker(queue))
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == SUCCEEDED, done
    assert seen == {
        "tenant": "acme", "type": "embed.batch",
        "payload": {"model": "emb", "inputs": ["hello", "fixed"], "n": 2},
    }  # fmt: skip
    assert done.outputs["state"] == "SUCCESS" and done.outputs["result"] == {"vectors": 2}
    task = await queue.get("acme", done.outputs["id"])
    assert task.state is TaskState.SUCCESS
    after = next(e for e in events if isinstance(e, NodeFinished) and e.node == "after")
    assert after.outputs == {"text": "2"}


async def test_a_failed_task_fails_the_node(queue: MemoryTaskQueue) -> None:
    svc = services(tasks=QueueTasks(queue))
    events, _ = await asyncio.gather(
        run(workflow(), {"text": "x"}, svc), worker(queue, "disk full")
    )
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == FAILED and done.error_node == "job"
    assert "ended FAILURE: disk full" in done.error


async def test_without_wait_the_node_goes_on(queue: MemoryTaskQueue) -> None:
    events = await run(workflow(wait=False), {"text": "x"}, services(tasks=QueueTasks(queue)))
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == SUCCEEDED, done
    assert done.outputs["state"] == "PENDING" and done.outputs["result"] is None
    assert (await queue.get("acme", done.outputs["id"])).state is TaskState.PENDING
    assert await queue.depth() == 1


async def test_the_task_types_check_the_payload_before_it_queues(queue: MemoryTaskQueue) -> None:
    svc = services(tasks=QueueTasks(queue, handlers.load()))
    events = await run(
        workflow(payload={"model": "emb", "inputs": "{{ start.text }}"}), {"text": "x"}, svc
    )
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == FAILED
    assert "payload.inputs: must be a non-empty list of strings" in done.error
    events = await run(workflow(type="no.such"), {"text": "x"}, svc)
    assert "unknown task type 'no.such'" in events[-1].error  # type: ignore[union-attr]
    assert await queue.depth() == 0


async def test_queue_tasks_bounds_the_payload(queue: MemoryTaskQueue) -> None:
    tasks = QueueTasks(queue, max_payload_bytes=20)
    with pytest.raises(InvalidTask, match="payload: 26 bytes, the limit is 20"):
        await tasks.submit("acme", "noop", {"text": "a" * 15})
    task_id = await tasks.submit("acme", "noop", {"t": "a"})
    assert (await queue.get("acme", task_id)).payload == {"t": "a"}


async def test_without_a_task_queue_the_node_fails() -> None:
    events = await run(workflow(), {"text": "x"}, services())
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == FAILED
    assert done.error == "node 'job': this gateway runs no task queue"
