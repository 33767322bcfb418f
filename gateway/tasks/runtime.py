"""The gateway's part of tasks: the queue from the config and, where the
config asks (always with the memory backend), workers in the gateway process
itself. Wire-free: the server puts the gRPC service in front of `queue`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from gateway.tasks.archive import build_archive
from gateway.tasks.config import TasksConfig, check_prefetch
from gateway.tasks.handlers import TaskTypes, UsageSink, load
from gateway.tasks.memory import MemoryTaskQueue
from gateway.tasks.queue import TaskQueue
from gateway.tasks.rabbitmq_queue import RabbitMQTaskQueue
from gateway.tasks.redis_queue import RedisTaskQueue
from gateway.tasks.worker import Worker
from router.config import ConfigError
from router.router import Router

Clock = Callable[[], float]


def build_queue(config: TasksConfig, data_dir: Path, clock: Clock = time.time) -> TaskQueue:
    """No I/O: Redis and RabbitMQ connect on first use."""
    results = build_archive(config.archive, data_dir)
    if config.backend == "rabbitmq":
        return RabbitMQTaskQueue(
            config.rabbitmq.url,
            config.redis_url,
            results,
            config.retry,
            queue=config.rabbitmq.queue,
            prefix=config.key_prefix,
            prefetch=config.rabbitmq.prefetch,
            visibility_timeout_s=config.visibility_timeout_s,
            ttl_s=config.ttl_s,
            clock=clock,
        )
    if config.backend == "redis":
        return RedisTaskQueue(
            config.redis_url,
            results,
            config.retry,
            prefix=config.key_prefix,
            visibility_timeout_s=config.visibility_timeout_s,
            ttl_s=config.ttl_s,
            clock=clock,
        )
    return MemoryTaskQueue(
        results,
        config.retry,
        visibility_timeout_s=config.visibility_timeout_s,
        ttl_s=config.ttl_s,
        clock=clock,
    )


def build_worker(
    config: TasksConfig,
    queue: TaskQueue,
    types: TaskTypes,
    router: Callable[[], Router],
    concurrency: int,
    usage: UsageSink | None = None,
) -> Worker:
    """Raises ConfigError if the config's fixed prefetch exceeds `concurrency`."""
    try:
        check_prefetch(config, concurrency)
    except ValueError as exc:
        raise ConfigError(f"tasks.{exc}") from exc
    return Worker(
        queue,
        types,
        router,
        concurrency=concurrency,
        visibility_timeout_s=config.visibility_timeout_s,
        task_timeout_s=config.task_timeout_s,
        usage=usage,
    )


class TaskRuntime:
    """Owns the queue and the in-process worker; `aclose` stops the worker
    (its tasks get `grace_s`, then go back to the queue) and closes the queue.
    `types` are the task types it accepts (default: the built-in ones); `usage`
    receives the model calls its workers' handlers make."""

    def __init__(
        self,
        config: TasksConfig,
        data_dir: Path,
        router: Callable[[], Router],
        *,
        types: TaskTypes | None = None,
        clock: Clock = time.time,
        usage: UsageSink | None = None,
    ) -> None:
        self.types = types if types is not None else load()
        self.queue = build_queue(config, data_dir, clock)
        self.worker: Worker | None = None
        self._running: asyncio.Task[None] | None = None
        if config.concurrency:
            self.worker = build_worker(
                config, self.queue, self.types, router, config.concurrency, usage
            )
            self._running = asyncio.create_task(self.worker.run())

    async def aclose(self, grace_s: float = 5.0) -> None:
        if self.worker is not None and self._running is not None:
            self.worker.stop(grace_s)
            try:
                await asyncio.wait_for(asyncio.shield(self._running), grace_s + 1)
            except TimeoutError:
                self._running.cancel()
        await self.queue.aclose()
