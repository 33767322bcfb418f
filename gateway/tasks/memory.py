"""The in-process TaskQueue: the embedded default. Records live in this
process (lost on restart, like the tasks still waiting); finished tasks and
their results are archived, so Get finds them after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import replace
from typing import Any

from gateway.tasks import states
from gateway.tasks.errors import TaskError, TaskNotFound
from gateway.tasks.model import FINAL, SETTLED, Task, TaskState
from gateway.tasks.queue import Lease, Page, ResultStore
from gateway.tasks.states import RetryPolicy

_FORGET_EVERY_S = 60.0
log = logging.getLogger("infergate.tasks")


class MemoryTaskQueue:
    """See queue.TaskQueue. `clock` (epoch seconds) stamps transitions, times
    backoffs and leases, so tests drive it; `ttl_s` bounds how long finished
    tasks stay in memory (the archive keeps them)."""

    def __init__(
        self,
        results: ResultStore,
        policy: RetryPolicy,
        *,
        visibility_timeout_s: float = 60.0,
        ttl_s: float = 86400.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._results = results
        self._policy = policy
        self._visibility = visibility_timeout_s
        self._ttl = ttl_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._tasks: dict[str, Task] = {}
        self._keys: dict[tuple[str, str], str] = {}
        self._pending: deque[str] = deque()
        self._leases: dict[str, float] = {}  # task id -> lease expiry
        self._changed = asyncio.Condition()
        self._forgotten_at = clock()
        self._unarchived: set[str] = set()

    # --- callers ------------------------------------------------------------------------

    async def submit(
        self, tenant: str, type: str, payload: Mapping[str, Any], idempotency_key: str = ""
    ) -> Task:
        if idempotency_key and (known := self._keys.get((tenant, idempotency_key))):
            return await self.get(tenant, known)
        self._forget_old()
        task = states.new_task(tenant, type, payload, idempotency_key, self._clock())
        if idempotency_key:
            self._keys[(tenant, idempotency_key)] = task.id
        self._pending.append(task.id)
        await self._store(task)
        return task

    async def get(self, tenant: str | None, task_id: str) -> Task:
        task = self._tasks.get(task_id)
        if task is None and tenant is not None:
            task = await self._results.get(tenant, task_id)
        if task is None or (tenant is not None and task.tenant != tenant):
            raise TaskNotFound(task_id)
        return task

    async def list_tasks(
        self, tenant: str | None, state: TaskState | None, page_size: int, page_token: str = ""
    ) -> Page:
        ids = sorted(i for i in self._tasks if i > page_token)
        found = []
        for task_id in ids:
            task = self._tasks[task_id]
            if (tenant is None or task.tenant == tenant) and state in (None, task.state):
                found.append(task)
                if len(found) == page_size:
                    break
        more = len(found) == page_size and found[-1].id != ids[-1]
        return Page(found, found[-1].id if more else "")

    async def cancel(self, tenant: str | None, task_id: str) -> Task:
        task = states.cancel(await self.get(tenant, task_id), self._clock())
        with contextlib.suppress(ValueError):
            self._pending.remove(task_id)
        await self._store(await self._archive(task))
        return task

    async def requeue(self, tenant: str | None, task_id: str) -> Task:
        task = states.requeue(await self.get(tenant, task_id), self._clock())
        self._pending.append(task_id)
        await self._store(task)
        return task

    async def watch(self, tenant: str | None, task_id: str) -> AsyncGenerator[Task, None]:
        seen: Task | None = None
        while True:
            async with self._changed:
                task = await self.get(tenant, task_id)
                if task == seen:
                    await self._changed.wait()
                    continue
            seen = task
            yield task
            if task.state in SETTLED:
                return

    # --- workers ------------------------------------------------------------------------

    async def claim(self, consumer: str, count: int, wait_s: float) -> list[Lease]:
        leases = self._reclaim(count)
        if not leases and not self._pending and wait_s > 0:
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self._pending)), wait_s
                    )
        while self._pending and len(leases) < count:
            task = self._tasks[self._pending.popleft()]
            leases.append(await self._start(states.start(task, self._clock())))
        return leases

    def _reclaim(self, count: int) -> list[Lease]:
        now = self._clock()
        late = [i for i, expiry in self._leases.items() if expiry <= now][:count]
        leases = []
        for task_id in late:
            del self._leases[task_id]
            task = states.reclaim(self._tasks[task_id], now, self._policy)
            self._put(task)
            if task.state is TaskState.PROCESSING:
                self._leases[task_id] = now + self._visibility
                leases.append(Lease(task, str(task.attempts)))
        return leases

    async def _start(self, task: Task) -> Lease:
        self._leases[task.id] = self._clock() + self._visibility
        await self._store(task)
        return Lease(task, str(task.attempts))

    async def extend(self, lease: Lease) -> None:
        if lease.task.id in self._leases:
            self._leases[lease.task.id] = self._clock() + self._visibility

    async def complete(self, lease: Lease, result: Mapping[str, Any]) -> Task:
        return await self._finish(lease, lambda t: states.succeed(t, result, self._clock()))

    async def fail(self, lease: Lease, error: str, retryable: bool = True) -> Task:
        return await self._finish(
            lease,
            lambda t: states.fail(t, error, self._clock(), self._policy, self._rng, retryable),
        )

    async def release(self, lease: Lease) -> Task:
        task = await self._finish(lease, lambda t: states.release(t, self._clock()))
        if task.state is TaskState.PENDING:
            self._pending.appendleft(task.id)
        return task

    async def _finish(self, lease: Lease, change: Callable[[Task], Task]) -> Task:
        current = self._tasks.get(lease.task.id) or lease.task
        if current.state is not TaskState.PROCESSING:
            return current  # another run of it finished first: the first result stands
        task = change(current)
        self._leases.pop(task.id, None)
        if task.state in FINAL:
            task = await self._archive(task)
        await self._store(task)
        return task

    async def _archive(self, task: Task) -> Task:
        """A failure leaves the task in memory for archive_pending to retry."""
        try:
            uri = await self._results.put(task)
        except (TaskError, OSError) as exc:
            log.warning("archiving task %s failed, will retry: %s", task.id, exc)
            self._unarchived.add(task.id)
            return task
        self._unarchived.discard(task.id)
        return replace(task, result_uri=uri)

    async def promote_due(self) -> int:
        now = self._clock()
        due = [
            t
            for t in self._tasks.values()
            if t.state is TaskState.RETRYING and (t.next_attempt_time or 0) <= now
        ]
        for task in due:
            self._pending.append(task.id)
            await self._store(states.due(task, now))
        return len(due)

    async def archive_pending(self, older_than_s: float = 30.0) -> int:
        cutoff = self._clock() - older_than_s
        due = [self._tasks[i] for i in self._unarchived if self._tasks[i].update_time <= cutoff]
        for task in due:
            await self._store(await self._archive(task))
        return sum(task.id not in self._unarchived for task in due)

    async def depth(self) -> int:
        return len(self._pending)

    async def aclose(self) -> None:
        await self._results.aclose()

    # --- storage ------------------------------------------------------------------------

    def _put(self, task: Task) -> None:
        self._tasks[task.id] = task

    async def _store(self, task: Task) -> None:
        async with self._changed:
            self._put(task)
            self._changed.notify_all()

    def _forget_old(self) -> None:
        """Drop finished tasks older than the TTL from memory (the archive has
        them); at most once a minute, so that submits stay O(1) on average."""
        now = self._clock()
        if now - self._forgotten_at < _FORGET_EVERY_S:
            return
        self._forgotten_at = now
        cutoff = now - self._ttl
        old = [
            t
            for t in self._tasks.values()
            if t.state in FINAL and t.result_uri and t.update_time < cutoff
        ]
        for task in old:
            del self._tasks[task.id]
            if task.idempotency_key:
                self._keys.pop((task.tenant, task.idempotency_key), None)
