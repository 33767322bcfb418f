"""The Tasks service through the real gateway, over a real channel: the
embedded default (in-process queue and workers) and Redis (no workers in the
gateway, so tasks stay put until the test moves them)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import httpx2 as httpx
import pytest
from google.protobuf import struct_pb2
from prometheus_client import REGISTRY

from gateway.pb import tasks_pb2 as pb
from gateway.pb import tasks_pb2_grpc
from gateway.server import Gateway
from tests.conftest import REDIS_URL, StartGateway
from tests.gateway.tasks.test_redis import free_port

Code = grpc.StatusCode


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(data)
    return message


def submit(kind: str, payload: dict[str, Any], key: str = "") -> pb.SubmitTaskRequest:
    return pb.SubmitTaskRequest(type=kind, payload=struct(payload), idempotency_key=key)


async def embedded(start_gateway: StartGateway, tmp_path: Path) -> Gateway:
    return await start_gateway(top={"data_dir": str(tmp_path)})


async def shared(start_gateway: StartGateway, tmp_path: Path, prefix: str, **tasks: Any) -> Gateway:
    settings = {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": prefix, **tasks}
    return await start_gateway(top={"data_dir": str(tmp_path), "tasks": settings})


async def test_submit_answers_at_once_then_a_worker_runs_it_to_success(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await embedded(start_gateway, tmp_path)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = tasks_pb2_grpc.TasksStub(channel)
        call = stub.Submit(submit("generate.batch", {"model": "chat", "prompts": ["a b", "c d e"]}))
        task = await call
        headers = dict(await call.initial_metadata())
        assert headers["x-http-code"] == "202"
        assert headers["location"] == f"/v1/tasks/{task.id}"
        assert task.state == pb.PENDING and task.type == "generate.batch"

        states = [t.state async for t in stub.Watch(pb.WatchTaskRequest(id=task.id), timeout=20)]
        assert states[-1] == pb.SUCCESS  # earlier ones only if it was still running

        done = await stub.Get(pb.GetTaskRequest(id=task.id))
    outputs = _plain(done.result)["outputs"]  # the mock echoes each prompt, 8 tokens long
    assert [o["text"].split()[:3] for o in outputs] == [["a", "b", "a"], ["c", "d", "e"]]
    assert [o["output_tokens"] for o in outputs] == [8, 8]
    assert done.attempts == 1
    assert [t.state for t in done.transitions] == [pb.PENDING, pb.PROCESSING, pb.SUCCESS]
    assert done.create_time.ToNanoseconds() <= done.update_time.ToNanoseconds()
    archived = tmp_path / "tasks" / "results" / "default" / f"{task.id}.json"
    assert done.result_uri == archived.resolve().as_uri() and archived.exists()


def _plain(message: struct_pb2.Struct) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(message)  # type: ignore[no-any-return]


async def test_embed_batch_returns_a_vector_per_input(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await embedded(start_gateway, tmp_path)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = tasks_pb2_grpc.TasksStub(channel)
        task = await stub.Submit(submit("embed.batch", {"model": "embed", "inputs": ["x", "y"]}))
        updates = [u async for u in stub.Watch(pb.WatchTaskRequest(id=task.id), timeout=20)]
    update = updates[-1]
    assert update.state == pb.SUCCESS
    assert len(_plain(update.result)["vectors"]) == 2


async def test_a_failing_model_is_retried_then_a_bad_request_fails_for_good(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await embedded(start_gateway, tmp_path)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = tasks_pb2_grpc.TasksStub(channel)
        task = await stub.Submit(submit("generate.batch", {"model": "nope", "prompts": ["x"]}))
        updates = [u async for u in stub.Watch(pb.WatchTaskRequest(id=task.id), timeout=20)]
    update = updates[-1]
    assert update.state == pb.FAILURE and update.attempts == 1
    assert "model 'nope' is not configured" in update.error


@pytest.mark.parametrize(
    ("request_", "code", "text"),
    [
        (submit("nope", {}), Code.INVALID_ARGUMENT, "type: unknown task type 'nope'"),
        (submit("generate.batch", {"model": "chat"}), Code.INVALID_ARGUMENT, "payload.prompts"),
        (
            submit("generate.batch", {"model": "chat", "prompts": ["a", 3]}),
            Code.INVALID_ARGUMENT,
            "payload.prompts.1",
        ),
        (submit("embed.batch", {"inputs": ["a"]}), Code.INVALID_ARGUMENT, "payload.model"),
        (submit("noop", {}, key="k" * 300), Code.INVALID_ARGUMENT, "idempotency_key"),
    ],
)
async def test_bad_submits_name_the_field(
    start_gateway: StartGateway,
    tmp_path: Path,
    request_: pb.SubmitTaskRequest,
    code: Code,
    text: str,
) -> None:
    gateway = await embedded(start_gateway, tmp_path)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await tasks_pb2_grpc.TasksStub(channel).Submit(request_)
    assert caught.value.code() == code and text in (caught.value.details() or "")


async def test_unknown_ids_and_bad_pages(start_gateway: StartGateway, tmp_path: Path) -> None:
    gateway = await embedded(start_gateway, tmp_path)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = tasks_pb2_grpc.TasksStub(channel)
        for call, code in [
            (stub.Get(pb.GetTaskRequest(id="00ff")), Code.NOT_FOUND),
            (stub.Get(pb.GetTaskRequest(id="../etc")), Code.NOT_FOUND),
            (stub.Get(pb.GetTaskRequest()), Code.INVALID_ARGUMENT),
            (stub.Cancel(pb.CancelTaskRequest(id="00ff")), Code.NOT_FOUND),
            (stub.List(pb.ListTasksRequest(page_size=5000)), Code.INVALID_ARGUMENT),
            (stub.List(pb.ListTasksRequest(page_token="zz")), Code.INVALID_ARGUMENT),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == code
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.Watch(pb.WatchTaskRequest(id="00ff")):
                pass
        assert caught.value.code() == Code.NOT_FOUND


async def test_redis_backed_cancel_list_idempotency_dead_letters_and_requeue(
    start_gateway: StartGateway, tmp_path: Path, redis_prefix: str
) -> None:
    gateway = await shared(start_gateway, tmp_path, redis_prefix, max_attempts=1)
    queue = gateway.task_runtime.queue  # type: ignore[union-attr]
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = tasks_pb2_grpc.TasksStub(channel)
        first = await stub.Submit(submit("noop", {"n": 1}, key="order-7"))
        again = await stub.Submit(submit("noop", {"n": 1}, key="order-7"))
        assert again.id == first.id and again.idempotency_key == "order-7"
        other = await stub.Submit(submit("noop", {"n": 2}))

        cancelled = await stub.Cancel(pb.CancelTaskRequest(id=first.id))
        assert cancelled.state == pb.CANCELLED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Cancel(pb.CancelTaskRequest(id=first.id))
        assert caught.value.code() == Code.FAILED_PRECONDITION

        everything = await stub.List(pb.ListTasksRequest())
        assert [t.id for t in everything.tasks] == [first.id, other.id]
        pending = await stub.List(pb.ListTasksRequest(state=pb.PENDING, page_size=1))
        assert [t.id for t in pending.tasks] == [other.id]

        lease = (await queue.claim("test", 1, 0.5))[0]
        await queue.fail(lease, "always fails")
        dead = await stub.ListDeadLetters(pb.ListDeadLettersRequest())
        assert [(t.id, t.error) for t in dead.tasks] == [(other.id, "always fails")]
        requeued = await stub.Requeue(pb.RequeueTaskRequest(id=other.id))
        assert (requeued.state, requeued.attempts) == (pb.PENDING, 0)
        assert (await stub.ListDeadLetters(pb.ListDeadLettersRequest())).tasks == []


async def test_redis_down_submit_is_unavailable_and_not_counted(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await start_gateway(
        top={
            "data_dir": str(tmp_path),
            "tasks": {"backend": "redis", "redis_url": f"redis://127.0.0.1:{free_port()}/0"},
        }
    )
    before = REGISTRY.get_sample_value("infergate_tasks_submitted_total", {"type": "noop"}) or 0
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = tasks_pb2_grpc.TasksStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Submit(submit("noop", {}), timeout=10)
        assert caught.value.code() == Code.UNAVAILABLE
        assert "task store unavailable" in (caught.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.List(pb.ListTasksRequest(), timeout=10)
        assert caught.value.code() == Code.UNAVAILABLE
    after = REGISTRY.get_sample_value("infergate_tasks_submitted_total", {"type": "noop"}) or 0
    assert after == before


async def test_rest_submit_answers_202_with_a_location_to_poll(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await embedded(start_gateway, tmp_path)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        reply = await http.post(
            "/v1/tasks",
            json={"type": "generate.batch", "payload": {"model": "chat", "prompts": ["hi"]}},
        )
        assert reply.status_code == 202, reply.text
        location = reply.headers["location"]
        assert location == f"/v1/tasks/{reply.json()['id']}"
        for _ in range(100):
            task = (await http.get(location)).json()
            if task["state"] == "SUCCESS":
                break
            await asyncio.sleep(0.05)
        assert task["state"] == "SUCCESS" and task["result"]["outputs"][0]["text"].startswith("hi")
        same = (await http.get(f"/v1/results/{task['id']}")).json()
        assert same["result"] == task["result"]
