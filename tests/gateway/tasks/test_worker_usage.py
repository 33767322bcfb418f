"""Task workers beyond the gateway's own: a separate worker runs `dataset.ingest`
(the Datasets of the same config) and every worker's model calls leave usage
records that QueryUsage counts, with the mock's exact token counts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import grpc
from google.protobuf import struct_pb2
from sqlalchemy import select

from adapters import build_provider
from gateway import assembly
from gateway.apps.model import UsageQuery
from gateway.apps.store import Store
from gateway.apps.tables import usage
from gateway.config import parse_config
from gateway.dataset.embedder import build_datasets
from gateway.pb import app_pb2, app_pb2_grpc, tasks_pb2, tasks_pb2_grpc
from gateway.tasks.model import Task, TaskState
from gateway.tasks.queue import TaskQueue
from gateway.tasks.runtime import build_queue
from indexer.documents import Query
from router.router import Router
from tests.conftest import MODELS, REDIS_URL, StartGateway

# The mock counts input words and answers `chat` with 8 tokens: 2 + 3 in, 8 + 8 out.
BATCH = {"model": "chat", "prompts": ["a b", "c d e"]}
INPUT_TOKENS, OUTPUT_TOKENS = 5, 16


async def wait_done(queue: TaskQueue, tenant: str, task_id: str, limit: float = 30) -> Task:
    deadline = time.monotonic() + limit
    while (task := await queue.get(tenant, task_id)).state is not TaskState.SUCCESS:
        assert task.state in (TaskState.PENDING, TaskState.PROCESSING), (task.state, task.error)
        assert time.monotonic() < deadline, f"still {task.state.name}"
        await asyncio.sleep(0.05)
    return task


async def test_query_usage_counts_a_generate_batch_tasks_tokens(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    top = {
        "data_dir": str(tmp_path),
        "apps": {"auth": {"enabled": False}, "usage": {"flush_interval_s": 0.05}},
    }
    gateway = await start_gateway(top=top)
    payload = struct_pb2.Struct()
    payload.update(BATCH)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        tasks = tasks_pb2_grpc.TasksStub(channel)
        task = await tasks.Submit(
            tasks_pb2.SubmitTaskRequest(type="generate.batch", payload=payload)
        )
        watched = tasks.Watch(tasks_pb2.WatchTaskRequest(id=task.id), timeout=20)
        assert [t.state async for t in watched][-1] == tasks_pb2.SUCCESS
        apps = app_pb2_grpc.AppStub(channel)
        query = app_pb2.QueryUsageRequest(group_by=["tenant", "model", "deployment"])
        deadline = time.monotonic() + 10
        while not (rows := (await apps.QueryUsage(query)).rows):  # written in the background
            assert time.monotonic() < deadline, "no usage recorded"
            await asyncio.sleep(0.05)
    # Only the task's calls: Submit, Watch and QueryUsage consume no model.
    assert [(dict(r.group), r.requests, r.input_tokens, r.output_tokens, r.errors)
            for r in rows] == [
        ({"tenant": "default", "model": "chat", "deployment": "chat-a"}, 2, INPUT_TOKENS,
         OUTPUT_TOKENS, 0),
    ]  # fmt: skip


async def test_a_refused_model_call_of_a_task_is_a_usage_error(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    top = {
        "data_dir": str(tmp_path),
        "apps": {"auth": {"enabled": False}, "usage": {"flush_interval_s": 0.05}},
    }
    gateway = await start_gateway(top=top)
    payload = struct_pb2.Struct()
    payload.update({"model": "no-such-model", "prompts": ["a b"]})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        tasks = tasks_pb2_grpc.TasksStub(channel)
        task = await tasks.Submit(
            tasks_pb2.SubmitTaskRequest(type="generate.batch", payload=payload)
        )
        watched = tasks.Watch(tasks_pb2.WatchTaskRequest(id=task.id), timeout=20)
        assert [t.state async for t in watched][-1] == tasks_pb2.FAILURE  # not retried
        apps = app_pb2_grpc.AppStub(channel)
        query = app_pb2.QueryUsageRequest(group_by=["model", "deployment"])
        deadline = time.monotonic() + 10
        while not (rows := (await apps.QueryUsage(query)).rows):
            assert time.monotonic() < deadline, "no usage recorded"
            await asyncio.sleep(0.05)
    assert [(dict(r.group), r.requests, r.input_tokens, r.errors) for r in rows] == [
        ({"model": "no-such-model", "deployment": ""}, 1, 0, 1)
    ]
    async with gateway.apps.store.engine.connect() as conn:  # the code, by its gRPC name
        statuses = (await conn.execute(select(usage.c.status))).scalars().all()
    assert statuses == ["NOT_FOUND"]


async def test_a_separate_worker_ingests_documents_and_records_usage(
    tmp_path: Path, tiny_model: Path, redis_prefix: str
) -> None:
    config = parse_config({
        "data_dir": str(tmp_path / "data"),
        "routing": {"probe_interval_s": 0},
        "models": MODELS,
        "dataset": {"snapshot_interval_s": 0, "embedder": {"model_dir": str(tiny_model)}},
        "apps": {"auth": {"enabled": False}, "usage": {"flush_interval_s": 0.05}},
        "tasks": {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": redis_prefix},
    })  # fmt: skip
    router = Router(config, build_provider)
    # The gateway's side: a collection, and two tasks on the shared queue.
    served = build_datasets(config.dataset, config.data_dir, lambda: router)
    await served.create("acme", "docs")
    await served.aclose()
    queue = build_queue(config.tasks, config.data_dir)
    document = {"id": "pets", "text": "Dogs bark at the mail carrier every morning."}
    ingest = await queue.submit(
        "acme", "dataset.ingest", {"collection": "collections/docs", "documents": [document]}
    )
    batch = await queue.submit("acme", "generate.batch", BATCH)

    # The worker's side, as `infergate worker` builds it.
    try:
        async with contextlib.AsyncExitStack() as stack:
            worker = await assembly.open_worker(config, stack, 2)
            assert "dataset.ingest" in worker.types.names() and worker.usage is not None
            running = asyncio.create_task(worker.run())
            try:
                ingested = await wait_done(queue, "acme", ingest.id)
                await wait_done(queue, "acme", batch.id)
            finally:
                worker.stop(1)
                await running
    finally:
        await queue.aclose()
        await router.aclose()
    assert ingested.result == {"documents": 1, "chunks": 1} and ingested.attempts == 1

    reopened = build_datasets(config.dataset, config.data_dir, lambda: router)
    try:
        hits = await reopened.search("acme", "docs", Query("dogs bark", k=1))
    finally:
        await reopened.aclose()
    assert [h.chunk.document_id for h in hits] == ["pets"]

    store = await Store.open(f"sqlite+aiosqlite:///{config.data_dir / 'infergate.db'}")
    try:
        rows = await store.usage.query(UsageQuery(0, int(time.time() * 1000) + 1, ("model",), 0))
    finally:
        await store.aclose()
    # The ingest embeds with the local ONNX model, not a Router call: no usage row.
    assert [(r.group, r.requests, r.input_tokens, r.output_tokens) for r in rows] == [
        ({"model": "chat"}, 2, INPUT_TOKENS, OUTPUT_TOKENS)
    ]
