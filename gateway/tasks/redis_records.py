"""Task state in Redis: the records, results, indexes and idempotency keys
that both shared backends keep here (`redis`, whose work also lives in Redis,
and `rabbitmq`, whose work lives in the broker). The work itself is the
queue's business: each queue adds its own operations to the transactions
below through the `more` callbacks.

Keys under `prefix`:
  task:{id}            the task record (JSON, without its result), with the TTL
  result:{id}          the result (JSON), written once, with the TTL
  key:{tenant}:{key}   idempotency key -> task id, with the TTL
  idx:{tenant}:{state} sorted sets of ids for List ("*" tenant: every tenant; "all" state)
  delayed              sorted set: RETRYING task id -> when it is due
  unarchived           finished tasks not yet archived -> when they finished
  events:{id}          pub/sub channel: the task changed

Every change of a record is one optimistic transaction (WATCH the record, apply
the state machine, MULTI/EXEC the record with the queue's and the indexes'
updates), so concurrent workers and callers never interleave half-changes;
creating a record is one Lua script, so it is stored whole or not at all.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, WatchError

from gateway.tasks import states
from gateway.tasks.errors import IllegalTransition, QueueUnavailable, TaskError, TaskNotFound
from gateway.tasks.model import FINAL, SETTLED, Task, TaskState
from gateway.tasks.queue import Page, ResultStore

log = logging.getLogger("infergate.tasks")
_SOCKET_TIMEOUT_S = 5.0
_WATCH_POLL_S = 1.0  # Watch re-reads the record this often in case a message was missed

# KEYS: record, idempotency key, work (a stream, or a sorted set), indexes...
# ARGV: id, record, ttl ms, has a key, 'stream' or 'zset', the zset score.
_CREATE = """
if ARGV[4] == '1' then
  local known = redis.call('GET', KEYS[2])
  if known then return known end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
for i = 4, #KEYS do redis.call('ZADD', KEYS[i], 0, ARGV[1]) end
if ARGV[5] == 'stream' then
  redis.call('XADD', KEYS[3], '*', 'id', ARGV[1])
else
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
end
return ARGV[1]
"""

# KEYS: record, idempotency key, work sorted set, indexes...   ARGV: id.
# Only while nobody else took the task on: still PENDING, still in `work`.
_WITHDRAW = """
local raw = redis.call('GET', KEYS[1])
if not raw or not redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
if cjson.decode(raw)['state'] ~= 'PENDING' then return 0 end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('DEL', KEYS[1])
for i = 3, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
"""

More = Callable[[Pipeline, Task, Task], None]


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise QueueUnavailable(f"task store unavailable: {exc}") from exc


class RedisRecords:
    """See the module docstring. `clock` (epoch seconds) stamps transitions."""

    def __init__(
        self,
        url: str,
        results: ResultStore,
        *,
        prefix: str,
        ttl_s: float,
        clock: Callable[[], float],
    ) -> None:
        # Any: redis-py's return types depend on decode_responses; these are bytes.
        self.redis: Any = redis.Redis.from_url(
            url,
            socket_timeout=_SOCKET_TIMEOUT_S,
            socket_connect_timeout=1,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        )
        self.prefix = prefix
        self.delayed = prefix + "delayed"
        self.unarchived = prefix + "unarchived"
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self._results = results
        self._clock = clock
        self._create = self.redis.register_script(_CREATE)
        self._withdraw = self.redis.register_script(_WITHDRAW)

    # --- keys ---------------------------------------------------------------------------

    def task_key(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    def result_key(self, task_id: str) -> str:
        return f"{self.prefix}result:{task_id}"

    def _idem_key(self, task: Task) -> str:
        return f"{self.prefix}key:{task.tenant}:{task.idempotency_key}"

    def _index(self, tenant: str | None, state: TaskState | None) -> str:
        return f"{self.prefix}idx:{tenant or '*'}:{state.name if state else 'all'}"

    def _indexes(self, task: Task, state: TaskState | None) -> tuple[str, str]:
        return self._index(task.tenant, state), self._index(None, state)

    def _all_indexes(self, task: Task) -> list[str]:
        return [*self._indexes(task, None), *self._indexes(task, task.state)]

    # --- records ------------------------------------------------------------------------

    async def create(self, task: Task, work: str, *, stream: bool) -> str:
        """Store a new PENDING task with its work item (an entry of the `work`
        stream, or its id in the `work` sorted set, scored with the time); the
        id stored under the task's idempotency key instead, if there is one."""
        keys = [self.task_key(task.id), self._idem_key(task), work, *self._all_indexes(task)]
        has_key = int(bool(task.idempotency_key))
        kind = "stream" if stream else "zset"
        args: list[Any] = [task.id, task.to_json(), self.ttl_ms, has_key, kind, self._clock()]
        with store_errors():
            stored: bytes = await self._create(keys=keys, args=args)
        return stored.decode()

    async def withdraw(self, task: Task, work: str) -> bool:
        """Undo `create` (its work sorted set) for a task that was not
        accepted, unless it is no longer PENDING or no longer in `work` (then
        someone else sent or started it): returns whether it was undone."""
        keys = [self.task_key(task.id), self._idem_key(task), work, *self._all_indexes(task)]
        with store_errors():
            return bool(await self._withdraw(keys=keys, args=[task.id]))

    async def get(self, tenant: str | None, task_id: str) -> Task:
        with store_errors():
            raw, result = await self.redis.mget(self.task_key(task_id), self.result_key(task_id))
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
        with store_errors():
            ids = await self.redis.zrange(index, start, "+", bylex=True, offset=0, num=page_size)
            raws = await self.redis.mget([self.task_key(i.decode()) for i in ids]) if ids else []
            gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            if gone:  # expired from the hot store; Get still finds them archived
                await self.redis.zrem(index, *gone)
        tasks = [Task.from_json(raw) for raw in raws if raw is not None]
        tasks = [t for t in tasks if state in (None, t.state)]
        next_token = ids[-1].decode() if len(ids) == page_size else ""
        return Page(tasks, next_token)

    async def cancel(self, tenant: str | None, task_id: str) -> Task:
        """Its work item stays where it is: whoever takes it finds nothing to run."""

        def unschedule(pipe: Pipeline, before: Task, after: Task) -> None:
            pipe.zrem(self.delayed, task_id)
            pipe.zadd(self.unarchived, {task_id: self._clock()})

        task = await self.change(
            task_id, lambda t: states.cancel(own(t, tenant), self._clock()), unschedule
        )
        return await self.archive(task)

    async def watch(self, tenant: str | None, task_id: str) -> AsyncGenerator[Task, None]:
        pubsub = self.redis.pubsub()
        try:
            with store_errors():
                await pubsub.subscribe(f"{self.prefix}events:{task_id}")
            seen: Task | None = None
            while True:
                task = await self.get(tenant, task_id)
                if task != seen:
                    seen = task
                    yield task
                    if task.state in SETTLED:
                        return
                with store_errors():
                    await pubsub.get_message(ignore_subscribe_messages=True, timeout=_WATCH_POLL_S)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    # --- changes ------------------------------------------------------------------------

    async def change(
        self, task_id: str, change: Callable[[Task], Task], more: More | None = None
    ) -> Task:
        """Read the record, apply `change` (which may raise), write it back with
        `more`, all or nothing; start over if anyone changed it meanwhile."""
        key = self.task_key(task_id)
        with store_errors():
            while True:
                async with self.redis.pipeline(transaction=True) as pipe:
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

    async def finish(
        self,
        task_id: str,
        change: Callable[[Task], Task],
        *,
        result: Mapping[str, Any] | None = None,
        more: More | None = None,
        always: More | None = None,
    ) -> tuple[Task, bool]:
        """End an attempt: `change`, its bookkeeping (the result, the retry
        schedule, the archive backlog) and `more`, with `always` whether or not,
        in one transaction; then archive a finished task. A task no longer
        PROCESSING was finished by another run: it is left as it is (the first
        result stands) and returned as stored, with False."""
        now = self._clock()
        body = json.dumps(result, separators=(",", ":")) if result is not None else None
        ours = True

        def settle(task: Task) -> Task:
            nonlocal ours
            ours = task.state is TaskState.PROCESSING
            return change(task) if ours else task

        def record(pipe: Pipeline, before: Task, after: Task) -> None:
            if always is not None:
                always(pipe, before, after)
            if not ours:
                return
            if body is not None:
                pipe.set(self.result_key(after.id), body, px=self.ttl_ms, nx=True)
            if after.state is TaskState.RETRYING:
                pipe.zadd(self.delayed, {after.id: after.next_attempt_time or now})
            elif after.state in FINAL:
                pipe.zadd(self.unarchived, {after.id: now})
            if more is not None:
                more(pipe, before, after)

        task = await self.change(task_id, settle, record)
        if not ours:
            return await self.get(None, task.id), False  # as stored, its result included
        return await self.archive(task), True

    async def promote_due(self, more: More) -> list[Task]:
        """RETRYING tasks whose backoff is over -> PENDING, with `more` each."""
        now = self._clock()
        with store_errors():
            ids = await self.redis.zrangebyscore(self.delayed, "-inf", now, start=0, num=100)

        def unschedule(pipe: Pipeline, before: Task, after: Task) -> None:
            pipe.zrem(self.delayed, after.id)
            more(pipe, before, after)

        promoted = []
        for raw in ids:
            task_id = raw.decode()
            try:
                promoted.append(
                    await self.change(task_id, lambda t: states.due(t, now), unschedule)
                )
            except (TaskNotFound, IllegalTransition):  # gone, cancelled, or already running
                with store_errors():
                    await self.redis.zrem(self.delayed, task_id)
        return promoted

    def _write(self, pipe: Pipeline, before: Task, after: Task) -> None:
        pipe.set(self.task_key(after.id), after.to_json(with_result=False), px=self.ttl_ms)
        if before.state is not after.state:
            for index in self._indexes(before, before.state):
                pipe.zrem(index, after.id)
            for index in self._indexes(after, after.state):
                pipe.zadd(index, {after.id: 0})
        pipe.publish(f"{self.prefix}events:{after.id}", after.state.name)

    # --- the archive --------------------------------------------------------------------

    async def archive(self, task: Task, strict: bool = False) -> Task:
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
        with store_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                record = archived.to_json(with_result=False)
                pipe.set(self.task_key(task.id), record, xx=True, keepttl=True)
                pipe.zrem(self.unarchived, task.id)
                pipe.publish(f"{self.prefix}events:{task.id}", task.state.name)
                await pipe.execute()
        return archived

    async def archive_pending(self, older_than_s: float = 30.0) -> int:
        """Archive finished tasks whose completion could not (the archive was
        down, or the worker died between the two); well before the TTL."""
        with store_errors():
            ids = await self.redis.zrangebyscore(
                self.unarchived, "-inf", self._clock() - older_than_s, start=0, num=100
            )
        done = 0
        for raw in ids:
            try:
                task = await self.archive(await self.get(None, raw.decode()), strict=True)
            except TaskNotFound:
                task = None
            except QueueUnavailable as exc:
                log.warning("archiving task %s failed, will retry: %s", raw.decode(), exc)
                continue
            with store_errors():
                await self.redis.zrem(self.unarchived, raw)
            done += task is not None
        return done

    async def aclose(self) -> None:
        await self.redis.aclose()
        await self._results.aclose()


def own(task: Task, tenant: str | None) -> Task:
    """`task`, unless it is another tenant's (then it does not exist for them)."""
    if tenant is not None and task.tenant != tenant:
        raise TaskNotFound(task.id)
    return task
