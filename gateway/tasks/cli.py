"""`infergate worker` and `infergate tasks dead-letters|requeue`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config import GatewayConfig, load_config
from gateway.tasks.errors import TaskError
from gateway.tasks.model import TaskState
from gateway.tasks.queue import TaskQueue
from gateway.tasks.runtime import build_queue, build_worker
from router.config import ConfigError

if TYPE_CHECKING:
    from gateway.tasks.handlers import TaskTypes, UsageSink
    from router.router import Router

log = logging.getLogger("infergate.tasks")
DEFAULTS = Path(__file__).resolve().parent.parent / "defaults.yaml"


def register(commands: Any) -> None:
    worker = commands.add_parser("worker", help="run queued tasks (tasks.backend: redis)")
    worker.add_argument("--config", help="YAML config (default: the embedded one)")
    worker.add_argument("--concurrency", type=int, default=4, help="tasks run at once")
    worker.add_argument(
        "--grace", type=float, default=30.0, help="on SIGTERM: seconds to finish before releasing"
    )
    worker.add_argument("--metrics-port", type=int, default=0, help="0: no /metrics")
    worker.set_defaults(run=run_worker)

    tasks = commands.add_parser("tasks", help="operate the task queue")
    actions = tasks.add_subparsers(dest="action", required=True)
    dead = actions.add_parser("dead-letters", help="list tasks that ran out of attempts")
    dead.add_argument("--config")
    dead.add_argument("--tenant", help="only this tenant's (default: every tenant's)")
    dead.add_argument("--limit", type=int, default=100)
    dead.set_defaults(run=run_dead_letters)
    requeue = actions.add_parser("requeue", help="a dead-lettered task back to PENDING")
    requeue.add_argument("id")
    requeue.add_argument("--config")
    requeue.set_defaults(run=run_requeue)


def _shared_config(args: argparse.Namespace) -> GatewayConfig:
    config = load_config(Path(args.config) if args.config else DEFAULTS)
    if config.tasks.backend != "redis":
        raise ConfigError(
            "tasks.backend is memory: its tasks live inside the gateway process; "
            "use tasks.backend: redis to run workers or operate the queue from here "
            "(or the Tasks RPCs of the running gateway)"
        )
    return config


def run_worker(args: argparse.Namespace) -> int:
    import uvloop

    if args.concurrency < 1:
        raise ConfigError("--concurrency must be >= 1")
    config = _shared_config(args)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=config.server.host)
    uvloop.run(_work(config, args.concurrency, args.grace))
    return 0


async def _work(config: GatewayConfig, concurrency: int, grace_s: float) -> None:
    from adapters import build_provider
    from router.router import Router

    router = Router(config, build_provider)
    async with worker_resources(config, lambda: router) as (types, usage):
        queue = build_queue(config.tasks, config.data_dir)
        worker = build_worker(config.tasks, queue, types, lambda: router, concurrency, usage)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop, grace_s)
        log.info("worker %s: running up to %d tasks at once", worker.name, concurrency)
        try:
            await worker.run()
        finally:
            await queue.aclose()
            await router.aclose()
    log.info("worker %s: stopped", worker.name)


@contextlib.asynccontextmanager
async def worker_resources(
    config: GatewayConfig, router: Callable[[], Router]
) -> AsyncIterator[tuple[TaskTypes, UsageSink | None]]:
    """What a worker outside the gateway needs for every task type the gateway
    accepts: the Datasets of the same config (`dataset.ingest`), and, with
    `apps.usage.enabled`, the App store's usage recorder (closed after the
    worker, so its queued records are written)."""
    from gateway.apps.runtime import open_store
    from gateway.apps.usage import UsageRecorder
    from gateway.dataset_embedder import build_datasets
    from gateway.dataset_snapshots import claim
    from gateway.dataset_tasks import ingest_task_type
    from gateway.tasks.handlers import load
    from gateway.tasks.usage import usage_sink

    types = load()
    datasets = None
    claimed = contextlib.ExitStack()
    recorder = None
    try:
        if config.dataset.enabled:
            claimed = await asyncio.to_thread(
                claim, config.dataset.snapshots, config.data_dir / "datasets"
            )
            datasets = build_datasets(config.dataset, config.data_dir, router)
            types.add(ingest_task_type(datasets))
        if config.apps.usage.enabled:
            usage = config.apps.usage
            store = await open_store(config.apps, config.data_dir)
            recorder = UsageRecorder(
                store, batch_size=usage.batch_size, interval_s=usage.flush_interval_s
            )
            recorder.start()
        yield types, usage_sink(recorder)
    finally:
        if recorder is not None:
            await recorder.aclose()
            await store.aclose()
        if datasets is not None:
            await datasets.aclose()  # snapshots the indexes it changed
        claimed.close()


def run_dead_letters(args: argparse.Namespace) -> int:
    return asyncio.run(_with_queue(args, _dead_letters))


def run_requeue(args: argparse.Namespace) -> int:
    return asyncio.run(_with_queue(args, _requeue))


async def _with_queue(args: argparse.Namespace, action: Any) -> int:
    config = _shared_config(args)
    queue = build_queue(config.tasks, config.data_dir)
    try:
        return int(await action(queue, args))
    except TaskError as exc:
        print(f"infergate: {exc}", file=sys.stderr)
        return 1
    finally:
        await queue.aclose()


async def _dead_letters(queue: TaskQueue, args: argparse.Namespace) -> int:
    page = await queue.list_tasks(args.tenant, TaskState.DEAD_LETTERED, args.limit)
    for task in page.tasks:
        print(f"{task.id}\t{task.tenant}\t{task.type}\tattempts={task.attempts}\t{task.error}")
    if page.next_token:
        print(f"(more: raise --limit above {args.limit})", file=sys.stderr)
    return 0


async def _requeue(queue: TaskQueue, args: argparse.Namespace) -> int:
    task = await queue.requeue(None, args.id)
    print(f"{task.id}\t{task.state.name}")
    return 0
