"""Task queue throughput and latency: no-op tasks through the real Worker and
the Redis Streams queue (RedisTaskQueue) or the RabbitMQ one
(RabbitMQTaskQueue: work in RabbitMQ, state in Redis), with 1, 2 and 4 worker
processes, against a baseline in the same run: bare Redis Streams (XADD ->
XREADGROUP -> XACK + XDEL + a result SET) with the same processes and batch sizes.

    python -m bench.tasks [--tasks 3000] [--workers 1,2,4] [--concurrency 16]
                          [--kinds bare,redis,rabbitmq]

Submits go out 32 at a time from this process while the workers run, so
completed/s is the end-to-end rate (first submit to last completion);
latencies come from the task records (all processes share one clock):
submit -> start (PROCESSING) and submit -> SUCCESS. A separate light-load
pass (one submit every 5 ms) gives them without a queue in front of the
workers; for the bare baseline start and finish are the same moment.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.synchronize
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import redis.asyncio as redis
import uvloop

from gateway.tasks.archive import LocalResultStore
from gateway.tasks.model import Task
from gateway.tasks.queue import TaskQueue
from gateway.tasks.rabbitmq_queue import RabbitMQTaskQueue
from gateway.tasks.redis_queue import GROUP, RedisTaskQueue
from gateway.tasks.states import RetryPolicy

URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
IN_FLIGHT = 32
NAMES = {
    "bare": "bare Redis Streams",
    "redis": "Redis Streams: RedisTaskQueue + Worker",
    "rabbitmq": "RabbitMQ: RabbitMQTaskQueue + Worker",
}


def _queue(kind: str, prefix: str) -> TaskQueue:
    results = LocalResultStore(Path(tempfile.gettempdir()) / f"bench-tasks-{prefix[-9:-1]}")
    if kind == "rabbitmq":
        return RabbitMQTaskQueue(
            AMQP_URL, URL, results, RetryPolicy(), queue=_amqp_name(prefix), prefix=prefix
        )
    return RedisTaskQueue(URL, results, RetryPolicy(), prefix=prefix, visibility_timeout_s=60)


def _amqp_name(prefix: str) -> str:
    return "infergate.bench." + prefix.split(":")[2]


async def _ready(prefix: str) -> None:
    """Tell the benchmark this process is up (imports done, connected)."""
    client = redis.Redis.from_url(URL)
    await client.incr(prefix + "ready")
    await client.aclose()


def _worker_process(kind: str, prefix: str, concurrency: int, stop: Any) -> None:
    uvloop.run(_work(kind, prefix, concurrency, stop))


async def _work(kind: str, prefix: str, concurrency: int, stop: Any) -> None:
    if kind == "bare":
        await _bare_consumer(prefix, concurrency, stop)
        return
    from gateway.tasks.handlers import load
    from gateway.tasks.worker import Worker

    queue = _queue(kind, prefix)
    worker = Worker(queue, load(), lambda: None, concurrency=concurrency, poll_s=0.2)  # type: ignore[arg-type, return-value]
    running = asyncio.create_task(worker.run())
    await _ready(prefix)
    await asyncio.to_thread(stop.wait)
    worker.stop(5)
    await running
    await queue.aclose()


async def _bare_consumer(prefix: str, count: int, stop: Any) -> None:
    client = redis.Redis.from_url(URL)
    stream, name = prefix + "stream", uuid.uuid4().hex
    await _ready(prefix)
    while not stop.is_set():
        reply = await client.xreadgroup(GROUP, name, {stream: ">"}, count=count, block=200)
        for _, entries in reply or ():
            async with client.pipeline(transaction=True) as pipe:
                for entry, fields in entries:
                    pipe.xack(stream, GROUP, entry)
                    pipe.xdel(stream, entry)
                    pipe.set(prefix + "result:" + fields[b"id"].decode(), b"{}")
                    pipe.zadd(prefix + "done", {fields[b"id"]: time.time()})
                await pipe.execute()
    await client.aclose()


class Run:
    def __init__(self, kind: str, workers: int, concurrency: int) -> None:
        self.kind = kind
        self.workers = workers
        self.concurrency = concurrency
        self.prefix = f"infergate:bench:{uuid.uuid4().hex}:"
        self.client = redis.Redis.from_url(URL)
        context = multiprocessing.get_context("spawn")
        self.stop: multiprocessing.synchronize.Event = context.Event()
        self.procs = [
            context.Process(
                target=_worker_process, args=(kind, self.prefix, concurrency, self.stop)
            )
            for _ in range(workers)
        ]

    async def start(self) -> None:
        await self.client.xgroup_create(self.prefix + "stream", GROUP, id="0", mkstream=True)
        for proc in self.procs:
            proc.start()

        async def ready() -> bool:
            if any(proc.exitcode is not None for proc in self.procs):
                raise RuntimeError(f"a {self.kind} worker process died before it started")
            return int(await self.client.get(self.prefix + "ready") or 0) >= self.workers

        await _until(ready, 0.1)

    async def close(self) -> None:
        self.stop.set()
        for proc in self.procs:
            await asyncio.to_thread(proc.join, 20)
        keys = [k async for k in self.client.scan_iter(match=self.prefix + "*")]
        if keys:
            await self.client.delete(*keys)
        await self.client.aclose()
        if self.kind == "rabbitmq":
            name = _amqp_name(self.prefix)
            connection = await aio_pika.connect(AMQP_URL)
            async with connection:
                channel = await connection.channel()
                for queue in (name, name + ".dead"):
                    await channel.queue_delete(queue)
                await channel.exchange_delete(name + ".dead-letter")

    async def finished(self, count: int) -> bool:
        key = "done" if self.kind == "bare" else "idx:*:SUCCESS"
        return int(await self.client.zcard(self.prefix + key)) >= count

    async def submitter(
        self,
    ) -> tuple[Callable[[int], Awaitable[str]], Callable[[], Awaitable[None]]]:
        if self.kind == "bare":
            stream = self.prefix + "stream"

            async def bare(i: int) -> str:
                task_id = f"{i:08d}"
                await self.client.hset(self.prefix + "sent", task_id, time.time())
                await self.client.xadd(stream, {"id": task_id})
                return task_id

            return bare, _nothing
        queue = _queue(self.kind, self.prefix)

        async def real(i: int) -> str:
            return (await queue.submit("bench", "noop", {})).id

        return real, queue.aclose

    async def latencies(self, ids: list[str]) -> tuple[list[float], list[float]]:
        """Sorted submit -> start and submit -> finish times."""
        if self.kind == "bare":
            sent = await self.client.hmget(self.prefix + "sent", ids)
            done = await self.client.zmscore(self.prefix + "done", ids)
            finished = sorted(d - float(s) for s, d in zip(sent, done, strict=True))
            return finished, finished
        raws = await self.client.mget([self.prefix + "task:" + i for i in ids])
        tasks = [Task.from_json(raw) for raw in raws]
        started = sorted(t.transitions[1].time - t.create_time for t in tasks)
        return started, sorted(t.update_time - t.create_time for t in tasks)


async def _nothing() -> None:
    return None


async def _until(done: Callable[[], Awaitable[bool]], interval: float) -> None:
    """Poll state that lives in Redis (no event to wait on) until `done`."""
    while True:
        if await done():
            return
        await asyncio.sleep(interval)


async def measure(kind: str, workers: int, tasks: int, concurrency: int) -> dict[str, float]:
    run = Run(kind, workers, concurrency)
    await run.start()
    try:
        submit, close = await run.submitter()
        # Light load first: latency with no backlog.
        light = []
        for i in range(200):
            light.append(await submit(i))
            await asyncio.sleep(0.005)
        await _until(lambda: run.finished(len(light)), 0.02)
        quiet_start, quiet_done = await run.latencies(light)
        # Then as fast as the submitter goes.
        limit = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int) -> str:
            async with limit:
                return await submit(i)

        started = time.perf_counter()
        ids = await asyncio.gather(*(one(i) for i in range(len(light), len(light) + tasks)))
        submitted = time.perf_counter() - started
        await _until(lambda: run.finished(len(light) + tasks), 0.01)
        completed = time.perf_counter() - started
        loaded_start, _ = await run.latencies(list(ids))
        await close()
    finally:
        await run.close()
    return {
        "submitted/s": tasks / submitted,
        "completed/s": tasks / completed,
        "light start p50 ms": 1000 * _pct(quiet_start, 50),
        "light start p99 ms": 1000 * _pct(quiet_start, 99),
        "light done p50 ms": 1000 * _pct(quiet_done, 50),
        "loaded start p50 ms": 1000 * _pct(loaded_start, 50),
        "loaded start p99 ms": 1000 * _pct(loaded_start, 99),
    }


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def main(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.workers.split(",")]
    rows: list[tuple[str, int, dict[str, float]]] = []
    for workers in counts:
        for kind in args.kinds.split(","):
            figures = await measure(kind, workers, args.tasks, args.concurrency)
            rows.append((kind, workers, figures))
            print(kind, workers, {k: round(v, 1) for k, v in figures.items()}, flush=True)
    metrics = list(rows[0][2])
    print("\n| backend | workers | " + " | ".join(metrics) + " |")
    print("|---|---:|" + "---:|" * len(metrics))
    for kind, workers, figures in rows:
        name = NAMES[kind]
        cells = " | ".join(
            f"{figures[m]:.0f}" if "/s" in m else f"{figures[m]:.1f}" for m in metrics
        )
        print(f"| {name} | {workers} | {cells} |")
    for kind in ("redis", "rabbitmq"):
        if ratios := _ratios(rows, kind, "bare"):
            print(f"median of completed/s ratios ({kind}/bare): {statistics.median(ratios):.2f}")
    if ratios := _ratios(rows, "rabbitmq", "redis"):
        print(f"median of completed/s ratios (rabbitmq/redis): {statistics.median(ratios):.2f}")


def _ratios(rows: list[tuple[str, int, dict[str, float]]], kind: str, base: str) -> list[float]:
    baseline = {w: f["completed/s"] for k, w, f in rows if k == base}
    return [f["completed/s"] / baseline[w] for k, w, f in rows if k == kind and w in baseline]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=16, help="tasks per worker at once")
    parser.add_argument("--kinds", default="bare,redis,rabbitmq", help="what to measure, in order")
    uvloop.run(main(parser.parse_args()))
