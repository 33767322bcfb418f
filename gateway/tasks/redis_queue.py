"""The Redis TaskQueue, for scale-out: many gateways submit, many workers run.

Keys under `prefix`:
  stream               work to do (one entry per runnable task), consumer group "workers"
  delayed              sorted set: RETRYING task id -> when it is due
  dead                 dead-letter stream (an event per task that ran out of attempts)
  task:{id}            the task record (JSON, without its result), with the TTL
  result:{id}          the result (JSON), written once, with the TTL
  key:{tenant}:{key}   idempotency key -> task id, with the TTL
  idx:{tenant}:{state} sorted sets of ids for List ("*" tenant: every tenant; "all" state)
  unarchived           finished tasks not yet archived -> when they finished
  events:{id}          pub/sub channel: the task changed

Every change of a record is one optimistic transaction (WATCH the record, apply
the state machine, MULTI/EXEC the record with its stream, index and set
updates), so concurrent workers and callers never interleave half-changes;
Submit is one Lua script, so an accepted task is stored whole or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, ResponseError, WatchError

from gateway.tasks import states
from gateway.tasks.errors import IllegalTransition, QueueUnavailable, TaskError, TaskNotFound
from gateway.tasks.model import FINAL, SETTLED, Task, TaskState
from gateway.tasks.queue import Lease, Page, ResultStore
from gateway.tasks.states import RetryPolicy

log = logging.getLogger("infergate.tasks")
GROUP = "workers"
_DEAD_MAXLEN = 100_000
_SOCKET_TIMEOUT_S = 5.0
_MAX_BLOCK_S = 4.0
_WATCH_POLL_S = 1.0  # Watch re-reads the record this often in case a message was missed

_SUBMIT = """
if ARGV[4] == '1' then  -- an idempotency key was given
  local known = redis.call('GET', KEYS[3])
  if known then return known end
  redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
for i = 4, #KEYS do redis.call('ZADD', KEYS[i], 0, ARGV[1]) end
redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
return ARGV[1]
"""


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise QueueUnavailable(f"task store unavailable: {exc}") from exc


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
        # Any: redis-py's return types depend on decode_responses; these are bytes.
        self._redis: Any = redis.Redis.from_url(
            url,
            socket_timeout=_SOCKET_TIMEOUT_S,
            socket_connect_timeout=1,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        )
        self._results = results
        self._policy = policy
        self._p = prefix
        self._stream = prefix + "stream"
        self._visibility_ms = max(1, round(visibility_timeout_s * 1000))
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._clock = clock
        self._rng = rng or random.Random()
        self._submit = self._redis.register_script(_SUBMIT)
        self._group_ready = False
        self._reclaim_from = "0-0"

    # --- keys ---------------------------------------------------------------------------

    def _task_key(self, task_id: str) -> str:
        return f"{self._p}task:{task_id}"

    def _result_key(self, task_id: str) -> str:
        return f"{self._p}result:{task_id}"

    def _index(self, tenant: str | None, state: TaskState | None) -> str:
        return f"{self._p}idx:{tenant or '*'}:{state.name if state else 'all'}"

    def _indexes(self, task: Task, state: TaskState | None) -> tuple[str, str]:
        return self._index(task.tenant, state), self._index(None, state)

    # --- callers ------------------------------------------------------------------------

    async def submit(
        self, tenant: str, type: str, payload: Mapping[str, Any], idempotency_key: str = ""
    ) -> Task:
        task = states.new_task(tenant, type, payload, idempotency_key, self._clock())
        idem = f"{self._p}key:{tenant}:{idempotency_key}"
        keys = [self._task_key(task.id), self._stream, idem]
        keys += [*self._indexes(task, None), *self._indexes(task, TaskState.PENDING)]
        args: list[Any] = [task.id, task.to_json(), self._ttl_ms, int(bool(idempotency_key))]
        with _store_errors():
            await self._ensure_group()
            stored = (await self._submit(keys=keys, args=args)).decode()
        if stored != task.id:
            return await self.get(tenant, stored)
        return task

    async def get(self, tenant: str | None, task_id: str) -> Task:
        with _store_errors():
            raw, result = await self._redis.mget(self._task_key(task_id), self._result_key(task_id))
        if raw is None:
            archived = await self._results.get(tenant, task_id) if tenant is not None else None
            if archived is None:
                raise TaskNotFound(task_id)
            return archived
        task = Task.from_json(raw)
        if tenant is not None and task.tenant != tenant:
            raise TaskNotFound(task_id)
        if result is not None:
            return replace(task, result=json.loads(result))
        if task.result_uri:  # the hot result expired first: the archive has it
            archived = await self._results.get(task.tenant, task_id)
            if archived is not None:
                return replace(task, result=archived.result)
        return task

    async def list_tasks(
        self, tenant: str | None, state: TaskState | None, page_size: int, page_token: str = ""
    ) -> Page:
        index = self._index(tenant, state)
        start = f"({page_token}" if page_token else "-"
        with _store_errors():
            ids = await self._redis.zrange(index, start, "+", bylex=True, offset=0, num=page_size)
            raws = await self._redis.mget([self._task_key(i.decode()) for i in ids]) if ids else []
            gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            if gone:  # expired from the hot store; Get still finds them archived
                await self._redis.zrem(index, *gone)
        tasks = [Task.from_json(raw) for raw in raws if raw is not None]
        tasks = [t for t in tasks if state in (None, t.state)]
        next_token = ids[-1].decode() if len(ids) == page_size else ""
        return Page(tasks, next_token)

    async def cancel(self, tenant: str | None, task_id: str) -> Task:
        def unschedule(pipe: Pipeline, before: Task, after: Task) -> None:
            pipe.zrem(self._p + "delayed", task_id)
            pipe.zadd(self._p + "unarchived", {task_id: self._clock()})

        task = await self._change(
            task_id, lambda t: states.cancel(self._own(t, tenant), self._clock()), unschedule
        )
        return await self._archive(task)

    async def requeue(self, tenant: str | None, task_id: str) -> Task:
        def enqueue(pipe: Pipeline, before: Task, after: Task) -> None:
            pipe.xadd(self._stream, {"id": task_id})

        return await self._change(
            task_id, lambda t: states.requeue(self._own(t, tenant), self._clock()), enqueue
        )

    async def watch(self, tenant: str | None, task_id: str) -> AsyncGenerator[Task, None]:
        pubsub = self._redis.pubsub()
        try:
            with _store_errors():
                await pubsub.subscribe(f"{self._p}events:{task_id}")
            seen: Task | None = None
            while True:
                task = await self.get(tenant, task_id)
                if task != seen:
                    seen = task
                    yield task
                    if task.state in SETTLED:
                        return
                with _store_errors():
                    await pubsub.get_message(ignore_subscribe_messages=True, timeout=_WATCH_POLL_S)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    @staticmethod
    def _own(task: Task, tenant: str | None) -> Task:
        if tenant is not None and task.tenant != tenant:
            raise TaskNotFound(task.id)
        return task

    # --- workers ------------------------------------------------------------------------

    async def claim(self, consumer: str, count: int, wait_s: float) -> list[Lease]:
        with _store_errors():
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
            task = await self._change(task_id, begin, after)
        except (TaskNotFound, IllegalTransition):  # expired, cancelled, already done
            await self._ack(token)
            return None
        return Lease(task, token) if task.state is TaskState.PROCESSING else None

    async def extend(self, lease: Lease) -> None:
        with _store_errors():
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
        body = json.dumps(result, separators=(",", ":"))

        def record(pipe: Pipeline, before: Task, task: Task) -> None:
            pipe.set(self._result_key(task.id), body, px=self._ttl_ms, nx=True)
            pipe.zadd(self._p + "unarchived", {task.id: now})

        return await self._settle(lease, lambda t: states.succeed(t, result, now), record)

    async def fail(self, lease: Lease, error: str, retryable: bool = True) -> Task:
        now = self._clock()

        def record(pipe: Pipeline, before: Task, task: Task) -> None:
            if task.state is TaskState.RETRYING:
                pipe.zadd(self._p + "delayed", {task.id: task.next_attempt_time or now})
            elif task.state is TaskState.DEAD_LETTERED:
                self._dead_letter(pipe, task)
            else:
                pipe.zadd(self._p + "unarchived", {task.id: now})

        change = lambda t: states.fail(t, error, now, self._policy, self._rng, retryable)  # noqa: E731
        return await self._settle(lease, change, record)

    async def release(self, lease: Lease) -> Task:
        def enqueue(pipe: Pipeline, before: Task, task: Task) -> None:
            pipe.xadd(self._stream, {"id": task.id})

        return await self._settle(lease, lambda t: states.release(t, self._clock()), enqueue)

    async def _settle(
        self,
        lease: Lease,
        change: Callable[[Task], Task],
        more: Callable[[Pipeline, Task, Task], None],
    ) -> Task:
        """End an attempt: the change, the entry acknowledged, `more`, at once;
        then archive a finished task. A task no longer PROCESSING was finished
        by another run: it is left as it is (the first result stands)."""

        ours = True

        def settle(task: Task) -> Task:
            nonlocal ours
            ours = task.state is TaskState.PROCESSING
            return change(task) if ours else task

        def record(pipe: Pipeline, before: Task, after: Task) -> None:
            self._done_with(pipe, lease.token)
            if ours:
                more(pipe, before, after)

        try:
            task = await self._change(lease.task.id, settle, record)
        except TaskNotFound:
            await self._ack(lease.token)
            raise
        if not ours:
            return await self.get(None, task.id)  # as stored, its result included
        return await self._archive(task)

    async def promote_due(self) -> int:
        now = self._clock()
        delayed = self._p + "delayed"
        with _store_errors():
            ids = await self._redis.zrangebyscore(delayed, "-inf", now, start=0, num=100)

        def enqueue(pipe: Pipeline, before: Task, after: Task) -> None:
            pipe.zrem(delayed, after.id)
            pipe.xadd(self._stream, {"id": after.id})

        promoted = 0
        for raw in ids:
            task_id = raw.decode()
            try:
                await self._change(task_id, lambda t: states.due(t, now), enqueue)
                promoted += 1
            except (TaskNotFound, IllegalTransition):
                with _store_errors():
                    await self._redis.zrem(delayed, task_id)
        return promoted

    async def archive_pending(self, older_than_s: float = 30.0) -> int:
        """Archive finished tasks whose completion could not (the archive was
        down, or the worker died between the two); well before the TTL."""
        unarchived = self._p + "unarchived"
        with _store_errors():
            ids = await self._redis.zrangebyscore(
                unarchived, "-inf", self._clock() - older_than_s, start=0, num=100
            )
        done = 0
        for raw in ids:
            try:
                task = await self._archive(await self.get(None, raw.decode()), strict=True)
            except TaskNotFound:
                task = None
            except QueueUnavailable as exc:
                log.warning("archiving task %s failed, will retry: %s", raw.decode(), exc)
                continue
            with _store_errors():
                await self._redis.zrem(unarchived, raw)
            done += task is not None
        return done

    async def depth(self) -> int:
        with _store_errors():
            await self._ensure_group()
            groups = await self._redis.xinfo_groups(self._stream)
        lag = next((g.get("lag") for g in groups if g["name"] in (GROUP, GROUP.encode())), None)
        if lag is None:
            with _store_errors():
                return int(await self._redis.xlen(self._stream))
        return int(lag)

    async def aclose(self) -> None:
        await self._redis.aclose()
        await self._results.aclose()

    # --- the pieces -----------------------------------------------------------------------

    async def _change(
        self,
        task_id: str,
        change: Callable[[Task], Task],
        more: Callable[[Pipeline, Task, Task], None] | None = None,
    ) -> Task:
        """Read the record, apply `change` (which may raise), write it back with
        `more`, all or nothing; start over if anyone changed it meanwhile."""
        key = self._task_key(task_id)
        with _store_errors():
            while True:
                async with self._redis.pipeline(transaction=True) as pipe:
                    try:
                        await pipe.watch(key)
                        raw = await pipe.get(key)
                        if raw is None:
                            raise TaskNotFound(task_id)
                        before = Task.from_json(raw)
                        after = change(before)
                        pipe.multi()
                        if after is not before:
                            self._write(pipe, before, after)
                        if more is not None:
                            more(pipe, before, after)
                        await pipe.execute()
                        return after
                    except WatchError:
                        continue

    def _write(self, pipe: Pipeline, before: Task, after: Task) -> None:
        pipe.set(self._task_key(after.id), after.to_json(with_result=False), px=self._ttl_ms)
        if before.state is not after.state:
            for index in self._indexes(before, before.state):
                pipe.zrem(index, after.id)
            for index in self._indexes(after, after.state):
                pipe.zadd(index, {after.id: 0})
        pipe.publish(f"{self._p}events:{after.id}", after.state.name)

    def _done_with(self, pipe: Pipeline, token: str) -> None:
        pipe.xack(self._stream, GROUP, token)
        pipe.xdel(self._stream, token)

    def _dead_letter(self, pipe: Pipeline, task: Task) -> None:
        event: dict[Any, Any] = {"id": task.id, "tenant": task.tenant, "type": task.type}
        event["error"] = task.error
        pipe.xadd(self._p + "dead", event, maxlen=_DEAD_MAXLEN, approximate=True)

    async def _ack(self, token: str) -> None:
        with _store_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                self._done_with(pipe, token)
                await pipe.execute()

    async def _archive(self, task: Task, strict: bool = False) -> Task:
        """Copy a finished task to the archive and note where. A failure leaves
        it in `unarchived` for archive_pending (or raises, when `strict`)."""
        if task.state not in FINAL or task.result_uri:
            return task
        try:
            uri = await self._results.put(task)
        except TaskError as exc:
            if strict:
                raise
            log.warning("archiving task %s failed, will retry: %s", task.id, exc)
            return task

        # A finished record never changes again, so no transaction is needed:
        # the only other writer (archive_pending) writes the same URI.
        archived = replace(task, result_uri=uri)
        with _store_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                record = archived.to_json(with_result=False)
                pipe.set(self._task_key(task.id), record, xx=True, keepttl=True)
                pipe.zrem(self._p + "unarchived", task.id)
                pipe.publish(f"{self._p}events:{task.id}", task.state.name)
                await pipe.execute()
        return archived

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True
