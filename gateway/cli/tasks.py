"""`infergate worker` and `infergate tasks dead-letters|requeue`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from gateway import assembly
from gateway.config import GatewayConfig, load_config
from gateway.tasks.errors import TaskError
from gateway.tasks.model import TaskState
from gateway.tasks.queue import TaskQueue
from gateway.tasks.runtime import build_queue
from router.config import ConfigError

log = logging.getLogger("infergate.tasks")


def register(commands: Any) -> None:
    worker = commands.add_parser(
        "worker", help="run queued tasks (tasks.backend: redis or rabbitmq)"
    )
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
    config = load_config(args.config)
    if config.tasks.backend == "memory":
        raise ConfigError(
            "tasks.backend is memory: its tasks live inside the gateway process; "
            "use tasks.backend: redis or rabbitmq to run workers or operate the queue from here "
            "(or the Tasks RPCs of the running gateway)"
        )
    return config


def run_worker(args: argparse.Namespace) -> int:
    import uvloop

    if args.concurrency < 1:
        raise ConfigError("--concurrency must be >= 1")
    config = _shared_config(args)
    if args.metrics_port:
        from gateway.metrics_server import serve_metrics

        serve_metrics(args.metrics_port, config.server.host)
    uvloop.run(_work(config, args.concurrency, args.grace))
    return 0


async def _work(config: GatewayConfig, concurrency: int, grace_s: float) -> None:
    """Run tasks until SIGTERM/SIGINT; on the way out close what the worker
    opened (gateway/assembly.py), last opened first."""
    async with contextlib.AsyncExitStack() as stack:
        worker = await assembly.open_worker(config, stack, concurrency)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop, grace_s)
        log.info("worker %s: running up to %d tasks at once", worker.name, concurrency)
        await worker.run()
    log.info("worker %s: stopped", worker.name)


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
