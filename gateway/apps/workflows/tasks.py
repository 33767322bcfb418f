"""The `task` node's TaskRunner over the gateway's own task queue."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from gateway.tasks.errors import QueueUnavailable
from gateway.tasks.handlers import TaskTypes, check_size
from gateway.tasks.model import SETTLED
from gateway.tasks.queue import TaskQueue


class QueueTasks:
    """Submits to `queue` what `types` accepts (the checks Tasks.Submit makes:
    a known type, a payload its validator passes, at most `max_payload_bytes`),
    and waits by watching the task until it settles."""

    def __init__(
        self, queue: TaskQueue, types: TaskTypes | None = None, max_payload_bytes: int | None = None
    ) -> None:
        self.queue = queue
        self.types = types
        self.max_payload_bytes = max_payload_bytes

    async def submit(self, tenant: str, type: str, payload: Mapping[str, Any]) -> str:
        if self.max_payload_bytes is not None:
            check_size(payload, self.max_payload_bytes)
        if self.types is not None:
            self.types.get(type).validate(payload)
        task = await self.queue.submit(tenant, type, payload)
        return task.id

    async def wait(self, tenant: str, task_id: str) -> tuple[str, Mapping[str, Any], str]:
        """(state name, result, error) once the task has settled (a dead
        letter counts: nothing changes it until someone requeues it)."""
        async with contextlib.aclosing(self.queue.watch(tenant, task_id)) as snapshots:
            async for task in snapshots:
                if task.state in SETTLED:
                    return task.state.name, task.result or {}, task.error
        raise QueueUnavailable(f"the watch of task {task_id} ended before it settled")
