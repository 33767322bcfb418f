"""The Redis TaskQueue, for scale-out: many gateways submit, many workers run.

The state (records, results, indexes, the retry schedule) is RedisRecords'
(gateway/tasks/redis_records.py); the work lives in Redis too, under `prefix`:
  stream               work to do (one entry per runnable task), consumer group "workers"
  dead                 dead-letter stream (an event per task that ran out of attempts)

A stream entry is added, acknowledged and deleted in the same transaction as
the record change it goes with; Submit is one Lua script, so an accepted task
is stored whole (record, key, indexes, entry) or not at all.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from gateway.tasks import states
from gateway.tasks.errors import IllegalTransition, TaskNotFound
from gateway.tasks.model import Task, TaskState
from gateway.tasks.queue import Lease, Page, ResultStore
from gateway.tasks.redis_records import RedisRecords, own, store_errors
from gateway.tasks.states import RetryPolicy

GROUP = "workers"
_DEAD_MAXLEN = 100_000
_MAX_BLOCK_S = 4.0


class RedisTaskQueue:
    """See queue.TaskQueue. `clock` (epoch seconds) stamps transitions and
    times backoffs; the visibility timeout is Redis's own idle time
    (XAUTOCLAIM), so it runs on real time."""

    def __init__(
        self,
        url: str,
        results: ResultStore,
        policy: RetryPolicy,
        *,
        prefix: str = "infergate:tasks:",
        visibility_timeout_s: float = 60.0,
        ttl_s: float = 7 * 86400,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._records = RedisRecords(url, results, prefix=prefix, ttl_s=ttl_s, clock=clock)
        self._redis = self._records.redis
        self._policy = policy
        self._p = prefix
        self._stream = prefix + "stream"
        self._visibility_ms = max(1, round(visibility_timeout_s * 1000))
        self._clock = clock
        self._rng = rng or random.Random()
        self._group_ready = False
        self._reclaim_from = "0-0"

    # --- callers ------------------------------------------------------------------------

    async def submit(
        self, tenant: str, type: str, payload: Mapping[str, Any], idempotency_key: str = ""
    ) -> Task:
        task = states.new_task(tenant, type, payload, idempotency_key, self._clock())
        with store_errors():
            await self._ensure_group()
        stored = await self._records.create(task, self._stream, stream=True)
        if stored != task.id:
            return await self.get(tenant, stored)
        return task

    async def get(self, tenant: str | None, task_id: str) -> Task:
        return await self._records.get(tenant, task_id)

    async def list_tasks(
        self, tenant: str | None, state: TaskState | None, page_size: int, page_token: str = ""
    ) -> Page:
        return await self._records.list_tasks(tenant, state, page_size, page_token)

    async def cancel(self, tenant: str | None, task_id: str) -> Task:
        return await self._records.cancel(tenant, task_id)

    async def requeue(self, tenant: str | None, task_id: str) -> Task:
        return await self._records.change(
            task_id, lambda t: states.requeue(own(t, tenant), self._clock()), self._enqueue
        )

    def watch(self, tenant: str | None, task_id: str) -> AsyncGenerator[Task, None]:
        return self._records.watch(tenant, task_id)

    # --- workers ------------------------------------------------------------------------

    async def claim(self, consumer: str, count: int, wait_s: float) -> list[Lease]:
        with store_errors():
            await self._ensure_group()
            cursor, entries, *_ = await self._redis.xautoclaim(
                self._stream,
                GROUP,
                consumer,
                min_idle_time=self._visibility_ms,
                start_id=self._reclaim_from,
                count=count,
            )
            self._reclaim_from = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
            leases = await self._take_all([e for e in entries if e])
            # Under the socket timeout: a longer wait returns empty, the caller asks again.
            block = round(min(wait_s, _MAX_BLOCK_S) * 1000) if wait_s > 0 and not leases else None
            while len(leases) < count:
                reply = await self._redis.xreadgroup(
                    GROUP, consumer, {self._stream: ">"}, count=count - len(leases), block=block
                )
                fresh = [entry for _stream, entries in reply or () for entry in entries]
                taken = await self._take_all(fresh)
                leases += taken
                if len(taken) == len(fresh):  # the stream is drained, or count reached
                    break
                block = None  # entries with nothing to run (cancelled): read on, no waiting
        return leases

    async def _take_all(self, entries: list[tuple[bytes, Mapping[bytes, bytes]]]) -> list[Lease]:
        """Start them concurrently: each is its own transaction on its own record."""
        taken = await asyncio.gather(*(self._take(*entry) for entry in entries))
        return [lease for lease in taken if lease is not None]

    async def _take(self, entry: bytes, fields: Mapping[bytes, bytes]) -> Lease | None:
        """Start the task an entry names, or drop an entry that has nothing to run."""
        task_id = fields[b"id"].decode()
        token = entry.decode()
        now = self._clock()

        def begin(task: Task) -> Task:
            if task.state is TaskState.PENDING:
                return states.start(task, now)
            if task.state is TaskState.PROCESSING:  # its worker went silent
                return states.reclaim(task, now, self._policy)
            raise IllegalTransition(task.id, task.state.name, TaskState.PROCESSING.name)

        def after(pipe: Pipeline, before: Task, task: Task) -> None:
            if task.state is TaskState.DEAD_LETTERED:
                self._done_with(pipe, token)
                self._dead_letter(pipe, task)

        try:
            task = await self._records.change(task_id, begin, after)
        except (TaskNotFound, IllegalTransition):  # expired, cancelled, already done
            await self._ack(token)
            return None
        return Lease(task, token) if task.state is TaskState.PROCESSING else None

    async def extend(self, lease: Lease) -> None:
        with store_errors():
            consumers = await self._redis.xpending_range(
                self._stream, GROUP, lease.token, lease.token, 1
            )
            if consumers:  # still ours to hold (it is gone once acknowledged)
                await self._redis.xclaim(
                    self._stream,
                    GROUP,
                    consumers[0]["consumer"],
                    0,
                    [lease.token],
                    justid=True,
                )

    async def complete(self, lease: Lease, result: Mapping[str, Any]) -> Task:
        now = self._clock()
        return await self._settle(lease, lambda t: states.succeed(t, result, now), result=result)

    async def fail(self, lease: Lease, error: str, retryable: bool = True) -> Task:
        now = self._clock()

        def dead_letter(pipe: Pipeline, before: Task, task: Task) -> None:
            if task.state is TaskState.DEAD_LETTERED:
                self._dead_letter(pipe, task)

        change = lambda t: states.fail(t, error, now, self._policy, self._rng, retryable)  # noqa: E731
        return await self._settle(lease, change, more=dead_letter)

    async def release(self, lease: Lease) -> Task:
        return await self._settle(
            lease, lambda t: states.release(t, self._clock()), more=self._enqueue
        )

    async def _settle(
        self,
        lease: Lease,
        change: Callable[[Task], Task],
        *,
        result: Mapping[str, Any] | None = None,
        more: Callable[[Pipeline, Task, Task], None] | None = None,
    ) -> Task:
        """End an attempt (RedisRecords.finish) with its entry acknowledged."""

        def done(pipe: Pipeline, before: Task, after: Task) -> None:
            self._done_with(pipe, lease.token)

        try:
            task, _ = await self._records.finish(
                lease.task.id, change, result=result, more=more, always=done
            )
        except TaskNotFound:
            await self._ack(lease.token)
            raise
        return task

    async def promote_due(self) -> int:
        return len(await self._records.promote_due(self._enqueue))

    async def archive_pending(self, older_than_s: float = 30.0) -> int:
        return await self._records.archive_pending(older_than_s)

    async def depth(self) -> int:
        with store_errors():
            await self._ensure_group()
            groups = await self._redis.xinfo_groups(self._stream)
        lag = next((g.get("lag") for g in groups if g["name"] in (GROUP, GROUP.encode())), None)
        if lag is None:
            with store_errors():
                return int(await self._redis.xlen(self._stream))
        return int(lag)

    async def aclose(self) -> None:
        await self._records.aclose()

    # --- the stream -----------------------------------------------------------------------

    def _enqueue(self, pipe: Pipeline, before: Task, task: Task) -> None:
        pipe.xadd(self._stream, {"id": task.id})

    def _done_with(self, pipe: Pipeline, token: str) -> None:
        pipe.xack(self._stream, GROUP, token)
        pipe.xdel(self._stream, token)

    def _dead_letter(self, pipe: Pipeline, task: Task) -> None:
        event: dict[Any, Any] = {"id": task.id, "tenant": task.tenant, "type": task.type}
        event["error"] = task.error
        pipe.xadd(self._p + "dead", event, maxlen=_DEAD_MAXLEN, approximate=True)

    async def _ack(self, token: str) -> None:
        with store_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                self._done_with(pipe, token)
                await pipe.execute()

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True
