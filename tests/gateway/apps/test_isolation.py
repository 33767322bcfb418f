"""Tenant isolation across the layers, with auth on and the real Dataset and task
layers: tenant B can neither read, search, chat with nor detect tenant A's apps,
collections and tasks, over gRPC and over REST; and an app's RAG answer cites
the chunk that holds the fact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx2 as httpx
import pytest
from google.protobuf import struct_pb2

from gateway.pb import (
    app_pb2,
    app_pb2_grpc,
    dataset_pb2,
    dataset_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)
from gateway.server import Gateway
from tests.conftest import StartGateway
from tests.gateway.apps.test_auth import bearer, new_key, secure_top

Metadata = tuple[tuple[str, str], ...]
HANDBOOK = [
    ("leave", "Every employee receives thirty days of paid vacation leave each year."),
    ("office", "The office building opens at eight in the morning and closes at six."),
    ("parking", "Visitors park for free on the lower level of the garage."),
]


@pytest.fixture
async def gateway(start_gateway: StartGateway, tmp_path: Path, tiny_model: Path) -> Gateway:
    top = secure_top(tmp_path)
    top["dataset"] = {"snapshot_interval_s": 0, "embedder": {"model_dir": str(tiny_model)}}
    return await start_gateway(top=top)


@pytest.fixture
async def channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        yield ch


@pytest.fixture
async def keys(channel: grpc.aio.Channel, gateway: Gateway) -> tuple[Metadata, Metadata]:
    """Developer keys of tenants acme (A) and beta (B); A owns an app, a collection
    holding the handbook, and a task."""
    a = bearer(await new_key(channel, gateway, "acme", "developer"))
    b = bearer(await new_key(channel, gateway, "beta", "developer"))
    datasets = dataset_pb2_grpc.DatasetStub(channel)
    await datasets.CreateCollection(
        dataset_pb2.CreateCollectionRequest(collection_id="handbook"), metadata=a
    )
    await datasets.UpsertDocuments(
        dataset_pb2.UpsertDocumentsRequest(
            collection="collections/handbook",
            documents=[dataset_pb2.Document(id=i, text=t) for i, t in HANDBOOK],
        ),
        metadata=a,
    )
    spec = app_pb2.AppSpec(
        model="chat", retrieval=app_pb2.Retrieval(collections=["collections/handbook"], k=1)
    )
    apps = app_pb2_grpc.AppStub(channel)
    await apps.CreateApp(app_pb2.CreateAppRequest(app_id="helpdesk", app=spec), metadata=a)
    return a, b


async def code_and_details(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        else:
            await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def test_rag_answer_cites_the_chunk_that_holds_the_fact(
    channel: grpc.aio.Channel, keys: tuple[Metadata, Metadata]
) -> None:
    a, _ = keys
    apps = app_pb2_grpc.AppStub(channel)
    request = app_pb2.ChatRequest(app="apps/helpdesk", query="how many days of paid leave")
    events = [e async for e in apps.Chat(request, metadata=a)]
    citations = [e.citation for e in events if e.HasField("citation")]
    assert [c.document_id for c in citations] == ["leave"]
    assert citations[0].chunk_id == "leave#0" and "thirty days" in citations[0].text
    assert citations[0].collection == "collections/handbook"
    assert events[-1].done.usage.output_tokens == 8


async def test_tenant_b_cannot_read_search_chat_with_or_detect_tenant_a_objects(
    channel: grpc.aio.Channel, keys: tuple[Metadata, Metadata]
) -> None:
    a, b = keys
    apps = app_pb2_grpc.AppStub(channel)
    datasets = dataset_pb2_grpc.DatasetStub(channel)
    tasks = tasks_pb2_grpc.TasksStub(channel)
    task = await tasks.Submit(
        tasks_pb2.SubmitTaskRequest(type="noop", payload=struct_pb2.Struct()), metadata=a
    )
    # Each pair: A's object, and one that exists nowhere. B must get the same answer.
    pairs: list[tuple[Any, Any]] = [
        (lambda n: apps.GetApp(app_pb2.GetAppRequest(name=f"apps/{n}"), metadata=b), "helpdesk"),
        (
            lambda n: apps.Chat(app_pb2.ChatRequest(app=f"apps/{n}", query="leave"), metadata=b),
            "helpdesk",
        ),
        (
            lambda n: datasets.GetCollection(
                dataset_pb2.GetCollectionRequest(name=f"collections/{n}"), metadata=b
            ),
            "handbook",
        ),
        (
            lambda n: datasets.Search(
                dataset_pb2.SearchRequest(collection=f"collections/{n}", text="leave"), metadata=b
            ),
            "handbook",
        ),
        (lambda n: tasks.Get(tasks_pb2.GetTaskRequest(id=n), metadata=b), task.id),
        (lambda n: tasks.Cancel(tasks_pb2.CancelTaskRequest(id=n), metadata=b), task.id),
        (lambda n: tasks.Watch(tasks_pb2.WatchTaskRequest(id=n), metadata=b), task.id),
    ]
    for make, existing in pairs:
        code, details = await code_and_details(make(existing))
        missing_code, missing_details = await code_and_details(make("zz-missing"))
        assert code is grpc.StatusCode.NOT_FOUND, (existing, details)
        assert (code, details.replace(existing, "X")) == (
            missing_code,
            missing_details.replace("zz-missing", "X"),
        )
    listed = await apps.ListApps(app_pb2.ListAppsRequest(), metadata=b)
    collections = await datasets.ListCollections(dataset_pb2.ListCollectionsRequest(), metadata=b)
    task_list = await tasks.List(tasks_pb2.ListTasksRequest(), metadata=b)
    assert not listed.apps and not collections.collections and not task_list.tasks
    # An app of B's that names A's collection cannot retrieve from it either.
    spec = app_pb2.AppSpec(
        model="chat", retrieval=app_pb2.Retrieval(collections=["collections/handbook"])
    )
    await apps.CreateApp(app_pb2.CreateAppRequest(app_id="thief", app=spec), metadata=b)
    code, _ = await code_and_details(
        apps.Completion(app_pb2.ChatRequest(app="apps/thief", query="leave"), metadata=b)
    )
    assert code is grpc.StatusCode.NOT_FOUND
    # A still sees all of its own.
    assert (await apps.GetApp(app_pb2.GetAppRequest(name="apps/helpdesk"), metadata=a)).model
    assert (await tasks.Get(tasks_pb2.GetTaskRequest(id=task.id), metadata=a)).id == task.id


async def test_isolation_and_auth_hold_over_rest(
    gateway: Gateway, keys: tuple[Metadata, Metadata]
) -> None:
    assert gateway.http_port, "the fixture serves REST"
    a, b = (dict(md) for md in keys)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        assert (await http.get("/v1/apps/helpdesk")).status_code == 401
        assert (await http.get("/v1/apps/helpdesk", headers=a)).status_code == 200
        for path in ("/v1/apps/helpdesk", "/v1/collections/handbook"):
            theirs = await http.get(path, headers=b)
            assert theirs.status_code == 404, path
        # A server-streaming RPC over REST runs as its caller too.
        streamed = await http.post(
            "/v1/apps/helpdesk:chat", headers=a, json={"query": "days of paid leave"}
        )
        assert streamed.status_code == 200 and "leave#0" in streamed.text
        theirs = await http.post(
            "/v1/apps/helpdesk:chat", headers=b, json={"query": "days of paid leave"}
        )
        assert theirs.status_code == 404 and "not found" in theirs.text
        user = bearer(await _user_key(gateway))
        denied = await http.post("/v1/apps", headers=dict(user), json={"model": "chat"})
        assert denied.status_code == 403


async def _user_key(gateway: Gateway) -> str:
    assert gateway.apps is not None
    from gateway.identity import Role

    _, secret = await gateway.apps.store.keys.create("acme", Role.USER, "test")
    return secret
