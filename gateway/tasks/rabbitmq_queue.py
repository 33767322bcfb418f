"""The RabbitMQ TaskQueue: the broker carries the work, Redis keeps the state.

RabbitMQ (gateway/tasks/amqp.py) holds a message per runnable task: durable
quorum queues, publisher confirms, manual acknowledgements. The records,
results, indexes, idempotency keys and the retry schedule are RedisRecords'
(gateway/tasks/redis_records.py), as with `backend: redis`, plus, under `prefix`:
  unsent          tasks whose message is not yet confirmed -> since when
  delivery:{id}   the id of the message its running attempt was started from

A message is a claim ticket, never the truth: whoever takes one reads the
record and starts the task only if it is PENDING, RETRYING and due, or
PROCESSING and the message is the very one its attempt started from, now
redelivered (its worker's channel closed: the worker died, or this process
found the lease silent and handed it back). Anything else (a duplicate, a
cancelled or finished task) is acknowledged and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline

from gateway.tasks import states
from gateway.tasks.amqp import Broker, Delivery
from gateway.tasks.errors import IllegalTransition, QueueUnavailable, TaskNotFound
from gateway.tasks.model import Task, TaskState
from gateway.tasks.queue import Lease, Page, ResultStore
from gateway.tasks.redis_records import RedisRecords, own, store_errors
from gateway.tasks.states import RetryPolicy

log = logging.getLogger("infergate.tasks")
_UNSENT_AFTER_S = 10.0  # a publisher this late has died: housekeeping sends its message


@dataclass(slots=True)
class _Held:
    delivery: Delivery
    renewed: float  # time.monotonic()


class RabbitMQTaskQueue:
    """See queue.TaskQueue. `clock` (epoch seconds) stamps transitions and
    times backoffs; leases run on real time: one not renewed within
    `visibility_timeout_s` is handed back to the broker by this process's next
    claim, and a dead process's are handed back by the broker itself."""

    def __init__(
        self,
        url: str,
        redis_url: str,
        results: ResultStore,
        policy: RetryPolicy,
        *,
        queue: str = "infergate.tasks",
        prefix: str = "infergate:tasks:",
        prefetch: int = 0,
        visibility_timeout_s: float = 60.0,
        ttl_s: float = 7 * 86400,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.broker = Broker(url, queue, prefetch=prefetch)
        self._records = RedisRecords(redis_url, results, prefix=prefix, ttl_s=ttl_s, clock=clock)
        self._policy = policy
        self._p = prefix
        self._unsent = prefix + "unsent"
        self._visibility_s = visibility_timeout_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._held: dict[str, _Held] = {}

    # --- callers ------------------------------------------------------------------------

    async def submit(
        self, tenant: str, type: str, payload: Mapping[str, Any], idempotency_key: str = ""
    ) -> Task:
        """Accepted once both hold it: the record in Redis, the message
        confirmed by the broker. An unconfirmed one is withdrawn, and raises;
        so does a repeat (the same idempotency key) of a submit still
        unconfirmed, if it cannot get the message confirmed itself."""
        task = states.new_task(tenant, type, payload, idempotency_key, self._clock())
        stored = await self._records.create(task, self._unsent, stream=False)
        if stored != task.id:
            return await self._repeated(tenant, stored)
        try:
            await self.broker.publish(task.id)
        except QueueUnavailable as exc:
            await self._withdraw(task, exc)
            return await self.get(tenant, task.id)  # a repeat had it confirmed: accepted
        try:
            await self._sent(task.id)
        except QueueUnavailable as exc:  # accepted all the same: at worst sent twice
            log.warning("task %s: still noted as unsent: %s", task.id, exc)
        return task

    async def _repeated(self, tenant: str, task_id: str) -> Task:
        """The task an earlier submit stored under the same key. If its
        message is not confirmed yet, that submit may still fail and withdraw
        it: publish it here, and answer once confirmed and out of `unsent`
        (from then on it is never withdrawn)."""
        with store_errors():
            unsent = await self._records.redis.zscore(self._unsent, task_id) is not None
        if unsent:
            try:
                await self.broker.publish(task_id)
            except QueueUnavailable as exc:
                raise QueueUnavailable(f"task {task_id} not accepted: {exc}") from exc
            await self._sent(task_id)
        try:
            return await self.get(tenant, task_id)
        except TaskNotFound as exc:  # the first submit withdrew it just before
            raise QueueUnavailable(f"task {task_id} not accepted: withdrawn") from exc

    async def _withdraw(self, task: Task, exc: QueueUnavailable) -> None:
        """Raises unless a repeat of the submit got the message confirmed (or
        the task was started or cancelled) meanwhile: then it stays."""
        try:
            withdrawn = await self._records.withdraw(task, self._unsent)
        except QueueUnavailable:
            # Still in `unsent`: housekeeping sends it, so "not accepted" would be untrue.
            raise QueueUnavailable(
                f"task {task.id} not confirmed and not withdrawn, it may still run "
                f"(a repeat with the same idempotency key tells): {exc}"
            ) from exc
        if withdrawn:
            raise QueueUnavailable(f"task {task.id} not accepted: {exc}") from exc
        log.info("task %s: not confirmed, but a repeat of its submit sent it", task.id)

    async def get(self, tenant: str | None, task_id: str) -> Task:
        return await self._records.get(tenant, task_id)

    async def list_tasks(
        self, tenant: str | None, state: TaskState | None, page_size: int, page_token: str = ""
    ) -> Page:
        return await self._records.list_tasks(tenant, state, page_size, page_token)

    async def cancel(self, tenant: str | None, task_id: str) -> Task:
        return await self._records.cancel(tenant, task_id)

    async def requeue(self, tenant: str | None, task_id: str) -> Task:
        task = await self._records.change(
            task_id, lambda t: states.requeue(own(t, tenant), self._clock()), self._outbox
        )
        await self._send(task.id)
        try:  # its earlier death stays in the history of its record
            await self.broker.drop_dead_letters(task.id)
        except QueueUnavailable as exc:
            log.warning("task %s: its old dead letter stays: %s", task.id, exc)
        return task

    def watch(self, tenant: str | None, task_id: str) -> AsyncGenerator[Task, None]:
        return self._records.watch(tenant, task_id)

    # --- workers ------------------------------------------------------------------------

    async def claim(self, consumer: str, count: int, wait_s: float) -> list[Lease]:
        await self._give_back_silent()
        prefetch = len(self._held) + count
        deadline = time.monotonic() + wait_s
        leases: list[Lease] = []
        while len(leases) < count:
            wait = 0.0 if leases else deadline - time.monotonic()
            deliveries = await self.broker.receive(prefetch, wait, count - len(leases))
            if not deliveries:
                break
            # Concurrently: each is its own transaction on its own record.
            starts = (self._take(d) for d in deliveries)
            taken = await asyncio.gather(*starts, return_exceptions=True)
            leases += [t for t in taken if isinstance(t, Lease)]
            failed = [t for t in taken if isinstance(t, BaseException)]
            if failed and not leases:
                raise failed[0]
            if failed:  # the ones that started are running: hand them out
                log.warning("claim: %d messages given back: %s", len(failed), failed[0])
                break
        return leases

    async def _take(self, delivery: Delivery) -> Lease | None:
        """Start the task a message names, or drop a message with nothing to
        run. On any error (the store unreachable, a cancel) the message goes
        back to the broker: it never stays with this process unsettled."""
        try:
            return await self._start(delivery)
        except BaseException:
            await self.broker.give_back(delivery)
            raise

    async def _start(self, delivery: Delivery) -> Lease | None:
        if self._adopted(delivery):
            return None
        task_id, now = delivery.task_id, self._clock()
        started_from = ""
        if delivery.redelivered:
            with store_errors():
                raw = await self._records.redis.get(self._marker(task_id))
            started_from = raw.decode() if raw else ""

        def begin(task: Task) -> Task:
            if task.state is TaskState.PENDING:
                return states.start(task, now)
            if task.state is TaskState.RETRYING and (task.next_attempt_time or 0) <= now:
                return states.start(states.due(task, now), now)
            if task.state is TaskState.PROCESSING and started_from == delivery.message_id:
                return states.reclaim(task, now, self._policy)  # its worker is gone
            raise IllegalTransition(task.id, task.state.name, TaskState.PROCESSING.name)

        def mark(pipe: Pipeline, before: Task, after: Task) -> None:
            if before.state is TaskState.RETRYING:
                pipe.zrem(self._records.delayed, after.id)
            if after.state is TaskState.PROCESSING:
                ttl = self._records.ttl_ms
                pipe.set(self._marker(after.id), delivery.message_id, px=ttl)

        try:
            task = await self._records.change(task_id, begin, mark)
        except (TaskNotFound, IllegalTransition):  # expired, cancelled, done, not due
            await self.broker.ack(delivery)
            return None
        if task.state is not TaskState.PROCESSING:  # worker lost once too often
            await self.broker.dead_letter(delivery)
            return None
        token = f"{delivery.channel}:{delivery.tag}"
        self._held[token] = _Held(delivery, time.monotonic())
        return Lease(task, token)

    def _adopted(self, delivery: Delivery) -> bool:
        """The message of an attempt running here, back from the broker (its
        channel closed, or the connection: a broker restart): the attempt
        goes on, settled through the message as delivered now."""
        for held in self._held.values():
            if held.delivery.message_id == delivery.message_id and delivery != held.delivery:
                held.delivery = delivery
                return True
        return False

    async def _give_back_silent(self) -> None:
        """Leases not renewed within the visibility timeout go back to the
        broker, redelivered to whoever asks next (the task runs again)."""
        cutoff = time.monotonic() - self._visibility_s
        for token, held in list(self._held.items()):
            if held.renewed <= cutoff:
                del self._held[token]
                await self.broker.give_back(held.delivery)

    async def extend(self, lease: Lease) -> None:
        held = self._held.get(lease.token)
        if held is not None:
            held.renewed = time.monotonic()

    async def complete(self, lease: Lease, result: Mapping[str, Any]) -> Task:
        """The result is stored before the message is acknowledged."""
        now = self._clock()
        task, _ = await self._finish(lease, lambda t: states.succeed(t, result, now), result)
        await self._settle(lease, self.broker.ack)
        return task

    async def fail(self, lease: Lease, error: str, retryable: bool = True) -> Task:
        now = self._clock()
        change = lambda t: states.fail(t, error, now, self._policy, self._rng, retryable)  # noqa: E731
        task, ours = await self._finish(lease, change)
        if ours and task.state is TaskState.RETRYING:
            await self._delay(task)
        dead = ours and task.state is TaskState.DEAD_LETTERED
        await self._settle(lease, self.broker.dead_letter if dead else self.broker.ack)
        return task

    async def release(self, lease: Lease) -> Task:
        task, ours = await self._finish(lease, lambda t: states.release(t, self._clock()))
        await self._settle(lease, self.broker.give_back if ours else self.broker.ack)
        return task

    async def _finish(
        self,
        lease: Lease,
        change: Callable[[Task], Task],
        result: Mapping[str, Any] | None = None,
    ) -> tuple[Task, bool]:
        try:
            return await self._records.finish(lease.task.id, change, result=result)
        except TaskNotFound:
            await self._settle(lease, self.broker.ack)
            raise

    async def _settle(self, lease: Lease, how: Callable[[Delivery], Any]) -> None:
        held = self._held.pop(lease.token, None)
        if held is not None:
            await how(held.delivery)

    async def _delay(self, task: Task) -> None:
        """The message that brings a RETRYING task back when it is due. If it
        cannot be sent, housekeeping's promote_due brings the task back."""
        delay_s = (task.next_attempt_time or 0) - self._clock()
        bucket_ms = round(self._policy.nominal_delay(task.attempts) * 1000)
        try:
            await self.broker.publish(task.id, delay_s=max(0.001, delay_s), bucket_ms=bucket_ms)
        except QueueUnavailable as exc:
            log.warning("task %s: its retry waits for housekeeping: %s", task.id, exc)

    async def promote_due(self) -> int:
        """Due RETRYING tasks the retry queues have not brought back yet
        (their messages expire at the head of their queue only), and messages
        a publisher never got confirmed."""
        promoted = await self._records.promote_due(self._outbox)
        for task in promoted:
            await self._send(task.id)
        with store_errors():
            unsent = await self._records.redis.zrangebyscore(
                self._unsent, "-inf", self._clock() - _UNSENT_AFTER_S, start=0, num=100
            )
        await asyncio.gather(*(self._send(raw.decode()) for raw in unsent))
        return len(promoted)

    async def archive_pending(self, older_than_s: float = 30.0) -> int:
        return await self._records.archive_pending(older_than_s)

    async def depth(self) -> int:
        return await self.broker.depth()

    async def aclose(self) -> None:
        await self.broker.aclose()
        await self._records.aclose()

    # --- messages out -------------------------------------------------------------------

    def _marker(self, task_id: str) -> str:
        return f"{self._p}delivery:{task_id}"

    def _outbox(self, pipe: Pipeline, before: Task, after: Task) -> None:
        pipe.zadd(self._unsent, {after.id: self._clock()})

    async def _send(self, task_id: str) -> None:
        """Publish the message of a task in `unsent`; one that fails stays
        there for housekeeping to send."""
        try:
            await self.broker.publish(task_id)
        except QueueUnavailable as exc:
            log.warning("task %s: its message waits for housekeeping: %s", task_id, exc)
            return
        await self._sent(task_id)

    async def _sent(self, task_id: str) -> None:
        with store_errors():
            await self._records.redis.zrem(self._unsent, task_id)
