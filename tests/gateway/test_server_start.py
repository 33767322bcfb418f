"""Gateway.start: `dataset.enabled: false` is honoured, and a start that fails
(a taken port) leaves nothing running or open behind it."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx2 as httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.dataset.disabled import DISABLED
from gateway.pb import app_pb2, app_pb2_grpc, dataset_pb2, dataset_pb2_grpc
from gateway.server import SERVICE_NAMES, Gateway
from tests.conftest import StartGateway, make_config

# --- dataset.enabled: false -------------------------------------------------------------


@pytest.fixture
async def disabled(start_gateway: StartGateway, tmp_path: Path) -> Gateway:
    top = {"data_dir": str(tmp_path / "data"), "dataset": {"enabled": False}}
    return await start_gateway(top=top)


@pytest.fixture
async def channel(disabled: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(disabled.address) as channel:
        yield channel


async def test_a_disabled_dataset_layer_answers_unimplemented_saying_why(
    channel: grpc.aio.Channel, disabled: Gateway, tmp_path: Path
) -> None:
    stub = dataset_pb2_grpc.DatasetStub(channel)
    calls = [
        stub.ListCollections(dataset_pb2.ListCollectionsRequest()),
        stub.CreateCollection(dataset_pb2.CreateCollectionRequest(collection_id="docs")),
        stub.IngestFile(
            iter([dataset_pb2.IngestFileRequest(collection="collections/docs", data=b"x")])
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert refused.value.details() == DISABLED
    assert "disabled in the config" in DISABLED
    assert not (tmp_path / "data" / "datasets").exists()  # nothing was opened
    assert disabled.tasks == set()  # no snapshot loop for datasets that are not there


async def test_a_disabled_dataset_layer_is_not_serving_in_health(
    channel: grpc.aio.Channel,
) -> None:
    health = health_pb2_grpc.HealthStub(channel)

    async def status(service: str) -> int:
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        return reply.status

    assert await status(SERVICE_NAMES["Dataset"]) == health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAMES["Router"], SERVICE_NAMES["App"], SERVICE_NAMES["Tasks"]):
        assert await status(name) == health_pb2.HealthCheckResponse.SERVING


async def test_a_disabled_dataset_layer_answers_rest_with_501(disabled: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{disabled.http_port}") as http:
        reply = await http.get("/v1/collections")
    assert reply.status_code == 501
    assert DISABLED in reply.text


async def test_apps_that_retrieve_fail_the_precondition_at_chat_time(
    channel: grpc.aio.Channel,
) -> None:
    apps = app_pb2_grpc.AppStub(channel)
    retrieval = app_pb2.Retrieval(collections=["collections/handbook"], k=2)
    # Saved while the layer is off: the app is kept as written, for when it is on again.
    await apps.CreateApp(
        app_pb2.CreateAppRequest(
            app_id="desk", app=app_pb2.AppSpec(model="chat", retrieval=retrieval)
        )
    )
    await apps.CreateApp(
        app_pb2.CreateAppRequest(app_id="plain", app=app_pb2.AppSpec(model="chat"))
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in apps.Chat(app_pb2.ChatRequest(app="apps/desk", query="leave days")):
            pass
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = refused.value.details() or ""
    assert "app.retrieval.collections" in details and DISABLED in details
    plain = await apps.Completion(app_pb2.ChatRequest(app="apps/plain", query="hello"))
    assert plain.text and not plain.citations


# --- a start that fails -----------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def _store_threads() -> set[threading.Thread]:
    """aiosqlite runs each open connection on a thread of its own."""
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


def _lively_config(tmp_path: Path, **top: Any) -> Any:
    """Everything that starts something: a usage recorder, an on-disk store,
    in-process task workers, probes and a dataset snapshot loop."""
    return make_config(
        top={
            "data_dir": str(tmp_path / "data"),
            "apps": {"auth": {"enabled": False}, "usage": {"enabled": True}},
            "routing": {"probe_interval_s": 0.05},
            "dataset": {"snapshot_interval_s": 0.05},
            **top,
        }
    )


async def _assert_nothing_left(before: set[threading.Thread]) -> None:
    await asyncio.sleep(0.05)  # anything left running would still be pending now
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert _store_threads() - before == set()


async def test_a_taken_grpc_port_fails_the_start_and_closes_what_had_started(
    tmp_path: Path, taken_port: int
) -> None:
    before = _store_threads()
    config = _lively_config(tmp_path)
    config = config.model_copy(
        update={"server": config.server.model_copy(update={"port": taken_port})}
    )
    with pytest.raises(OSError, match=f"cannot serve gRPC on 127.0.0.1:{taken_port}"):
        await Gateway.start(config)
    await _assert_nothing_left(before)


async def test_a_taken_rest_port_fails_the_start_and_closes_what_had_started(
    tmp_path: Path, taken_port: int
) -> None:
    before = _store_threads()
    config = _lively_config(tmp_path)
    config = config.model_copy(update={"rest": config.rest.model_copy(update={"port": taken_port})})
    with pytest.raises(OSError):
        await Gateway.start(config)
    await _assert_nothing_left(before)


async def test_the_same_config_starts_and_closes_cleanly_on_a_free_port(tmp_path: Path) -> None:
    before = _store_threads()
    gateway = await Gateway.start(_lively_config(tmp_path))
    assert gateway.tasks  # the probe and snapshot loops run
    await gateway.server.stop(None)
    await gateway.close()
    await _assert_nothing_left(before)


async def test_apps_that_retrieve_before_the_model_is_fetched_fail_the_precondition(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await start_gateway(top={"data_dir": str(tmp_path / "no-model")})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        apps = app_pb2_grpc.AppStub(channel)
        retrieval = app_pb2.Retrieval(collections=["collections/handbook"], k=2)
        spec = app_pb2.AppSpec(model="chat", retrieval=retrieval)
        await apps.CreateApp(app_pb2.CreateAppRequest(app_id="desk", app=spec))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in apps.Chat(app_pb2.ChatRequest(app="apps/desk", query="leave days")):
                pass
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "infergate model fetch" in (refused.value.details() or "")
