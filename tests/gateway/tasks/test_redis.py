# ruff: noqa: F811  (pytest fixtures imported from fixtures.py are parameters here)
"""The Redis queue beyond the contract: crash recovery with real worker
processes, graceful stop, the S3 archive (a local moto server), a dead Redis,
the dead-letter stream and the operator CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis.asyncio as redis
import yaml

from adapters import build_provider
from gateway.cli import main
from gateway.config import GatewayConfig, parse_config
from gateway.tasks.archive import S3ResultStore
from gateway.tasks.config import ArchiveConfig
from gateway.tasks.errors import QueueUnavailable
from gateway.tasks.handlers import load
from gateway.tasks.model import Task, TaskState
from gateway.tasks.queue import TaskQueue
from gateway.tasks.runtime import build_queue, build_worker
from router.router import Router
from tests.conftest import REDIS_URL
from tests.gateway.tasks.fixtures import (  # noqa: F401 (fixtures)
    FakeClock,
    QueueFactory,
    _s3_credentials,
    clock,
    make_redis_queue,
    s3_endpoint,
)

ROOT = Path(__file__).resolve().parents[3]
S = TaskState
SLOW_MS = 1500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_config(tmp_path: Path, prefix: str, **tasks: Any) -> tuple[Path, GatewayConfig]:
    data = {
        "routing": {"probe_interval_s": 0},
        "data_dir": str(tmp_path / "data"),
        "models": {
            "slow": {
                "deployments": [
                    {"name": "s", "provider": "mock", "model": "echo",
                     "options": {"latency_ms": SLOW_MS, "tokens": 3}}
                ]
            },
        },
        "tasks": {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": prefix,
                  "visibility_timeout_s": 1, **tasks},
    }  # fmt: skip
    path = tmp_path / "worker.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, parse_config(data)


def start_worker(path: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "worker", "--config", str(path), *extra],
        cwd=ROOT,
        env={**os.environ, "INFERGATE_LOG_LEVEL": "WARNING"},
        stderr=subprocess.PIPE,
    )


async def wait_for_state(
    queue: TaskQueue, task_id: str, state: TaskState, limit: float = 20
) -> Task:
    deadline = time.monotonic() + limit
    while (task := await queue.get("t1", task_id)).state is not state:
        assert time.monotonic() < deadline, f"still {task.state.name}, wanted {state.name}"
        await asyncio.sleep(0.05)
    return task


BATCH = {"model": "slow", "prompts": ["one two three"]}


@pytest.mark.slow
async def test_kill_9_mid_task_completes_on_another_worker_with_one_result(
    tmp_path: Path, redis_prefix: str, redis_client: redis.Redis, make_redis_queue: QueueFactory
) -> None:
    # 2 s: on a loaded machine a 1 s lease can lapse under a live worker, which
    # is allowed (at least once) but would blur what this test counts.
    path, config = worker_config(tmp_path, redis_prefix, visibility_timeout_s=2)
    queue = make_redis_queue(clock=time.time, visibility_timeout_s=2)
    task = await queue.submit("t1", "generate.batch", BATCH)
    doomed = start_worker(path, "--concurrency", "1")
    try:
        running = await wait_for_state(queue, task.id, S.PROCESSING)
        assert running.attempts == 1
    finally:
        doomed.kill()  # SIGKILL: no chance to release anything
        doomed.communicate()
    assert doomed.returncode == -signal.SIGKILL

    router = Router(config, build_provider)
    survivor = build_worker(config.tasks, queue, load(), lambda: router, 2)
    running_worker = asyncio.create_task(survivor.run())
    try:
        done = await wait_for_state(queue, task.id, S.SUCCESS)
    finally:
        survivor.stop(1)
        await running_worker
        await router.aclose()
    assert done.attempts == 2
    assert [t.reason for t in done.transitions].count("worker lost") == 1
    assert [t.state for t in done.transitions].count(S.SUCCESS) == 1
    assert done.result is not None and done.result["outputs"][0]["text"] == "one two three"
    result_keys = [k async for k in redis_client.scan_iter(match=redis_prefix + "result:*")]
    assert result_keys == [f"{redis_prefix}result:{task.id}".encode()]
    pending = await redis_client.xpending(redis_prefix + "stream", "workers")
    assert pending["pending"] == 0 and await redis_client.xlen(redis_prefix + "stream") == 0


@pytest.mark.slow
async def test_sigterm_releases_a_task_that_cannot_finish_in_the_grace(
    tmp_path: Path, redis_prefix: str, make_redis_queue: QueueFactory
) -> None:
    path, _ = worker_config(tmp_path, redis_prefix, visibility_timeout_s=60)
    queue = make_redis_queue(clock=time.time)
    task = await queue.submit("t1", "generate.batch", BATCH)
    worker = start_worker(path, "--concurrency", "1", "--grace", "0.1")
    try:
        await wait_for_state(queue, task.id, S.PROCESSING)
        worker.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(worker.communicate, timeout=20)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr.decode()
    released = await queue.get("t1", task.id)
    assert (released.state, released.attempts) == (S.PENDING, 0)
    assert released.transitions[-1].reason == "released"
    assert await queue.depth() == 1  # at once: no visibility timeout to wait out


async def test_a_stopping_worker_finishes_what_fits_in_the_grace(
    tmp_path: Path, redis_prefix: str, make_redis_queue: QueueFactory
) -> None:
    _, config = worker_config(tmp_path, redis_prefix)
    queue = make_redis_queue(clock=time.time, visibility_timeout_s=1)
    task = await queue.submit("t1", "generate.batch", BATCH)
    router = Router(config, build_provider)
    worker = build_worker(config.tasks, queue, load(), lambda: router, 1)
    running = asyncio.create_task(worker.run())
    await wait_for_state(queue, task.id, S.PROCESSING)
    worker.stop(grace_s=10)
    await running
    await router.aclose()
    assert (await queue.get("t1", task.id)).state is S.SUCCESS


async def test_redis_down_submit_is_unavailable_and_nothing_is_accepted(
    make_redis_queue: QueueFactory,
) -> None:
    queue = make_redis_queue(url=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(QueueUnavailable, match="task store unavailable"):
        await queue.submit("t1", "noop", {})
    with pytest.raises(QueueUnavailable):
        await queue.get("t1", "00ff")
    assert time.monotonic() - started < 5


async def test_archived_to_s3_and_found_after_the_redis_record_expired(
    s3_endpoint: str, make_redis_queue: QueueFactory, redis_client: redis.Redis, redis_prefix: str
) -> None:
    archive = S3ResultStore(ArchiveConfig(backend="s3", bucket="results", endpoint_url=s3_endpoint))
    queue = make_redis_queue(results=archive, ttl_s=0.5)
    task = await queue.submit("t1", "noop", {"n": 1})
    lease = (await queue.claim("w1", 1, 0.5))[0]
    done = await queue.complete(lease, {"answer": "kept"})
    assert done.result_uri == f"s3://results/tasks/t1/{task.id}.json"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    stored = json.loads(
        s3.get_object(Bucket="results", Key=f"tasks/t1/{task.id}.json")["Body"].read()
    )
    s3.close()
    assert stored["result"] == {"answer": "kept"} and stored["state"] == "SUCCESS"

    await asyncio.sleep(0.6)
    assert await redis_client.exists(f"{redis_prefix}task:{task.id}") == 0  # expired
    found = await queue.get("t1", task.id)
    assert (found.state, found.result, found.result_uri) == (
        S.SUCCESS,
        {"answer": "kept"},
        done.result_uri,
    )
    assert [t.state for t in found.transitions] == [S.PENDING, S.PROCESSING, S.SUCCESS]


async def test_an_archive_outage_is_made_up_for_later(
    s3_endpoint: str, make_redis_queue: QueueFactory, clock: FakeClock
) -> None:
    down = S3ResultStore(
        ArchiveConfig(
            backend="s3", bucket="results", endpoint_url=f"http://127.0.0.1:{free_port()}"
        )
    )
    queue = make_redis_queue(results=down)
    task = await queue.submit("t1", "noop", {})
    done = await queue.complete((await queue.claim("w1", 1, 0.5))[0], {"v": 1})
    assert done.state is S.SUCCESS and done.result_uri == ""  # recorded, not yet archived

    up = S3ResultStore(ArchiveConfig(backend="s3", bucket="results", endpoint_url=s3_endpoint))
    sweeper = make_redis_queue(results=up)  # another worker's housekeeping
    assert await sweeper.archive_pending() == 0  # too recent: its own worker may still be at it
    clock.now += 31
    assert await sweeper.archive_pending() == 1
    archived = await queue.get("t1", task.id)
    assert archived.result_uri.startswith("s3://results/") and archived.result == {"v": 1}
    assert await sweeper.archive_pending() == 0


async def test_dead_letters_land_in_the_dead_letter_stream(
    make_redis_queue: QueueFactory, redis_client: redis.Redis, redis_prefix: str
) -> None:
    queue = make_redis_queue(policy=load_policy(1))
    task = await queue.submit("t1", "noop", {})
    await queue.fail((await queue.claim("w1", 1, 0.5))[0], "always")
    entries = await redis_client.xrange(redis_prefix + "dead")
    assert [(e[1][b"id"], e[1][b"tenant"], e[1][b"error"]) for e in entries] == [
        (task.id.encode(), b"t1", b"always")
    ]


def load_policy(max_attempts: int) -> Any:
    from gateway.tasks.states import RetryPolicy

    return RetryPolicy(max_attempts=max_attempts, base_s=1, max_s=1, jitter=0)


async def test_cli_lists_and_requeues_dead_letters(
    tmp_path: Path,
    redis_prefix: str,
    make_redis_queue: QueueFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, _ = worker_config(tmp_path, redis_prefix)
    queue = make_redis_queue(policy=load_policy(1))
    task = await queue.submit("acme", "noop", {})
    await queue.fail((await queue.claim("w1", 1, 0.5))[0], "no luck")

    assert await asyncio.to_thread(main, ["tasks", "dead-letters", "--config", str(path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == [f"{task.id}\tacme\tnoop\tattempts=1\tno luck"]
    assert await asyncio.to_thread(main, ["tasks", "requeue", task.id, "--config", str(path)]) == 0
    assert capsys.readouterr().out == f"{task.id}\tPENDING\n"
    assert (await queue.get("acme", task.id)).state is S.PENDING
    assert await asyncio.to_thread(main, ["tasks", "requeue", task.id, "--config", str(path)]) == 1
    assert "cannot become PENDING" in capsys.readouterr().err


def test_cli_refuses_a_worker_for_the_memory_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "memory.yaml"
    path.write_text(yaml.safe_dump({"models": {"m": {"deployments": [
        {"name": "a", "provider": "mock", "model": "echo"}]}}}))  # fmt: skip
    assert main(["worker", "--config", str(path)]) == 2
    assert "tasks.backend is memory" in capsys.readouterr().err


def test_build_queue_picks_the_configured_backend(tmp_path: Path) -> None:
    from gateway.tasks.memory import MemoryTaskQueue
    from gateway.tasks.redis_queue import RedisTaskQueue

    memory = parse_config({"models": {"m": {"deployments": [
        {"name": "a", "provider": "mock", "model": "echo"}]}}})  # fmt: skip
    assert isinstance(build_queue(memory.tasks, tmp_path), MemoryTaskQueue)
    shared = memory.tasks.model_copy(update={"backend": "redis"})
    assert isinstance(build_queue(shared, tmp_path), RedisTaskQueue)
