"""Runs tasks: claims them from a TaskQueue, runs their type's handler with a
heartbeat that keeps the lease, and records how the attempt ended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from opentelemetry.trace import SpanKind

from gateway import identity
from gateway.tasks import metrics
from gateway.tasks.errors import InvalidTask, QueueUnavailable, TaskError, TaskFailed
from gateway.tasks.handlers import TaskContext, TaskTypes, UsageSink
from gateway.tasks.model import Task, TaskState
from gateway.tasks.queue import Lease, TaskQueue
from router import spans
from router.router import Router

log = logging.getLogger("infergate.tasks")
_HOUSEKEEPING_S = 1.0


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class Worker:
    """Up to `concurrency` tasks at once. `run()` returns after `stop()`
    once its tasks finished, or after the grace with the rest cancelled and
    released (back to PENDING at once, for another worker). Store outages are
    logged and retried; a lease whose outcome could not be recorded is taken
    over by another worker after the visibility timeout."""

    def __init__(
        self,
        queue: TaskQueue,
        types: TaskTypes,
        router: Callable[[], Router],
        *,
        concurrency: int = 4,
        visibility_timeout_s: float = 60.0,
        task_timeout_s: float = 600.0,
        poll_s: float = 0.5,
        name: str | None = None,
        usage: UsageSink | None = None,
    ) -> None:
        self.queue = queue
        self.usage = usage
        self.types = types
        self.router = router
        self.concurrency = concurrency
        self.name = name or consumer_name()
        self._heartbeat_s = visibility_timeout_s / 3
        self._task_timeout_s = task_timeout_s
        self._poll_s = poll_s
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._grace_s = 0.0

    def stop(self, grace_s: float = 30.0) -> None:
        """Claim nothing more; running tasks get `grace_s` to finish."""
        self._grace_s = grace_s
        self._stopping.set()

    async def run(self) -> None:
        housekept = 0.0
        try:
            while not self._stopping.is_set():
                if time.monotonic() - housekept >= _HOUSEKEEPING_S:
                    await self._housekeeping()
                    housekept = time.monotonic()
                free = self.concurrency - len(self._running)
                if free <= 0:
                    await asyncio.wait(self._running, timeout=self._poll_s)
                    continue
                try:
                    leases = await self.queue.claim(self.name, free, self._poll_s)
                except QueueUnavailable as exc:
                    log.warning("worker %s cannot claim tasks: %s", self.name, exc)
                    await self._pause()
                    continue
                for lease in leases:
                    self._start(lease)
        finally:
            await self._drain(self._grace_s)

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self._poll_s * 2)

    async def _housekeeping(self) -> None:
        try:
            await self.queue.promote_due()
            await self.queue.archive_pending()
            metrics.QUEUE_DEPTH.set(await self.queue.depth())
        except QueueUnavailable as exc:
            log.warning("task housekeeping failed: %s", exc)

    def _start(self, lease: Lease) -> None:
        task = asyncio.create_task(self._attempt(lease))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _drain(self, grace_s: float) -> None:
        if not self._running:
            return
        _, late = await asyncio.wait(self._running, timeout=grace_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _attempt(self, lease: Lease) -> None:
        task = lease.task
        metrics.IN_FLIGHT.inc()
        heartbeat = asyncio.create_task(self._heartbeat(lease))
        try:
            try:
                task_type = self.types.get(task.type)
            except InvalidTask:
                # Accepted by a gateway that knows the type: a worker without its
                # handler (older, or not configured for it) must not fail it for good.
                error = f"this worker has no handler for task type {task.type!r}"
                await self._record(self.queue.fail(lease, error))
                return
            try:
                context = TaskContext(task, self.router(), self.usage)
                # As the task's tenant: what it calls (the request cache) is scoped by it.
                with identity.bound(replace(identity.ANONYMOUS, tenant=task.tenant)):
                    async with asyncio.timeout(self._task_timeout_s):
                        with _span(task):
                            result = await task_type.run(context, task.payload)
                written = await self._usage_written(task)  # a cancel here releases the lease
            except asyncio.CancelledError:
                await asyncio.shield(self._record(self.queue.release(lease)))
                raise
            except InvalidTask as exc:
                await self._record(self.queue.fail(lease, str(exc), retryable=False))
            except TaskFailed as exc:
                await self._record(self.queue.fail(lease, str(exc), exc.retryable))
            except TimeoutError:
                error = f"attempt timed out after {self._task_timeout_s:g}s"
                await self._record(self.queue.fail(lease, error))
            except Exception as exc:  # a handler bug: retried, then dead-lettered
                log.exception("task %s (%s) raised", task.id, task.type)
                await self._record(self.queue.fail(lease, f"{type(exc).__name__}: {exc}"))
            else:
                if written:
                    await self._record(self.queue.complete(lease, dict(result)))
                else:
                    error = "its usage records could not be written"
                    await self._record(self.queue.fail(lease, error))
        finally:
            heartbeat.cancel()
            metrics.IN_FLIGHT.dec()

    async def _usage_written(self, task: Task) -> bool:
        """Write the queued usage records before a result is saved: once it is,
        the task will not run again to record them."""
        if self.usage is None:
            return True
        try:
            await self.usage.flush()
        except Exception:
            log.exception("task %s: writing its usage records failed", task.id)
            return False
        return True

    async def _record(self, outcome: Awaitable[Task]) -> None:
        try:
            task = await outcome
        except TaskError as exc:
            log.warning("could not record a task's outcome (it will run again): %s", exc)
            return
        state = task.state
        if state is TaskState.RETRYING:
            metrics.RETRIES.labels(task.type).inc()
        elif state is TaskState.DEAD_LETTERED:
            metrics.DEAD_LETTERS.labels(task.type).inc()
        elif state in (TaskState.SUCCESS, TaskState.FAILURE):
            metrics.FINISHED.labels(task.type, state.name).inc()
            metrics.LATENCY.labels(task.type).observe(max(0.0, task.update_time - task.create_time))

    async def _heartbeat(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                await self.queue.extend(lease)
            except QueueUnavailable as exc:
                log.warning("cannot renew the lease of task %s: %s", lease.task.id, exc)


def _span(task: Task) -> contextlib.AbstractContextManager[object]:
    """The run's span, in the submitting request's trace when it carried one."""
    if not spans.ON:
        return contextlib.nullcontext()
    parent = spans.extract({"traceparent": task.traceparent}) if task.traceparent else None
    attributes: dict[str, str | int] = {
        "infergate.task.id": task.id,
        "infergate.task.type": task.type,
        "infergate.task.attempt": task.attempts,
    }
    return spans.span("infergate.task", attributes, SpanKind.CONSUMER, parent)
