"""The cost of each call, end to end on the mock with a test price table:
unary, streamed, cached and cut mid-stream; on the reply's usage, in the
`x-infergate-cost` trailer (and HTTP header), in the usage records and
QueryUsage totals, and in the Prometheus counter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import httpx2 as httpx
import pytest
from prometheus_client import REGISTRY

from gateway.apps.model import UsageQuery
from gateway.pb import app_pb2, app_pb2_grpc, router_pb2, router_pb2_grpc
from gateway.server import Gateway
from tests.conftest import StartGateway, chat
from tests.gateway.apps.test_auth import admin, secure_top

# USD per million tokens: input 1, cached input 0.5, output 2.
PRICE = {"input": 1.0, "cached_input": 0.5, "output": 2.0}
MODELS: dict[str, Any] = {
    "chat": {"deployments": [{"name": "chat-a", "provider": "mock", "model": "echo?tokens=8",
                              "price": PRICE}]},
    "cut": {"deployments": [{"name": "cut-a", "provider": "mock",
                             "model": "echo?fail_after_tokens=3", "price": PRICE}]},
    "warm": {"deployments": [{"name": "warm-a", "provider": "mock",
                              "model": "echo?tokens=8&cached_input_tokens=1", "price": PRICE}]},
    "free": {"deployments": [{"name": "free-a", "provider": "mock", "model": "echo?tokens=8"}]},
}  # fmt: skip
# "hello world": 2 input tokens (mock counts words), 8 output tokens.
UNARY = 2 * 1000 + 8 * 2000  # nano-dollars


def cost_metric(deployment: str) -> float:
    labels = {"tenant": "default", "model": deployment.split("-")[0], "deployment": deployment}
    return REGISTRY.get_sample_value("infergate_cost_usd_total", labels) or 0.0


@pytest.fixture
async def gateway(start_gateway: StartGateway, tmp_path: Path) -> Gateway:
    top = secure_top(tmp_path)
    top["cache"] = {"enabled": True}
    return await start_gateway(MODELS, top=top)


@pytest.fixture
async def stub(gateway: Gateway) -> Any:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield router_pb2_grpc.RouterStub(channel)


async def test_a_unary_call_costs_its_usage_at_the_deployments_price(
    gateway: Gateway, stub: Any
) -> None:
    before = cost_metric("chat-a")
    call = stub.Generate(chat("chat"), metadata=admin(gateway))
    reply = await call
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (2, 8)
    assert reply.usage.cost_usd == pytest.approx(UNARY / 1e9, abs=1e-15)
    assert dict(await call.trailing_metadata())["x-infergate-cost"] == "0.000018"
    assert cost_metric("chat-a") - before == pytest.approx(UNARY / 1e9)


async def test_a_streamed_call_costs_the_same_on_its_last_chunk(
    gateway: Gateway, stub: Any
) -> None:
    call = stub.GenerateStream(chat("chat"), metadata=admin(gateway))
    chunks = [c async for c in call]
    assert [c.HasField("usage") for c in chunks] == [False] * 8 + [True]
    assert chunks[-1].usage.cost_usd == pytest.approx(UNARY / 1e9, abs=1e-15)
    assert dict(await call.trailing_metadata())["x-infergate-cost"] == "0.000018"


async def test_cached_input_tokens_cost_the_cached_price(gateway: Gateway, stub: Any) -> None:
    reply = await stub.Generate(chat("warm"), metadata=admin(gateway))
    assert reply.usage.cached_input_tokens == 1
    assert reply.usage.cost_usd == pytest.approx((1000 + 500 + 8 * 2000) / 1e9, abs=1e-15)


async def test_an_answer_from_the_request_cache_costs_nothing(gateway: Gateway, stub: Any) -> None:
    ask = chat("chat", "a cached question", params=router_pb2.GenerationParams(temperature=0))
    first = await stub.Generate(ask, metadata=admin(gateway))
    assert first.usage.cost_usd > 0 and not first.cached
    call = stub.Generate(ask, metadata=admin(gateway))
    second = await call
    assert second.cached and second.usage.cost_usd == 0
    assert dict(await call.trailing_metadata())["x-infergate-cost"] == "0"


async def test_a_stream_cut_mid_way_costs_what_it_delivered(gateway: Gateway, stub: Any) -> None:
    assert gateway.apps is not None and gateway.apps.recorder is not None
    call = stub.GenerateStream(chat("cut"), metadata=admin(gateway))
    deltas = []
    with pytest.raises(grpc.aio.AioRpcError):
        async for chunk in call:
            deltas.append(chunk.delta)
    assert len(deltas) == 3
    await gateway.apps.recorder.flush()
    rows = await gateway.apps.store.usage.query(_query(("deployment",)))
    [row] = [r for r in rows if r.group["deployment"] == "cut-a"]
    # 3 chunks of one token each, and the input as estimated: "hello world" // 4 + 1.
    assert (row.input_tokens, row.output_tokens, row.errors) == (3, 3, 1)
    assert row.cost_nanos == 3 * 1000 + 3 * 2000


async def test_query_usage_sums_the_cost_by_key_and_model(gateway: Gateway, stub: Any) -> None:
    assert gateway.apps is not None and gateway.apps.recorder is not None
    for model in ("chat", "chat", "free"):
        await stub.Generate(chat(model), metadata=admin(gateway))
    await gateway.apps.recorder.flush()
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        apps = app_pb2_grpc.AppStub(channel)
        got = await apps.QueryUsage(
            app_pb2.QueryUsageRequest(group_by=["key", "model"]), metadata=admin(gateway)
        )
    by_model = {r.group["model"]: r for r in got.rows}
    assert by_model["chat"].requests == 2
    assert by_model["chat"].cost_usd == pytest.approx(2 * UNARY / 1e9)
    assert by_model["free"].cost_usd == 0
    assert by_model["chat"].group["key"] == by_model["free"].group["key"] != ""


async def test_the_cost_is_an_http_header_over_rest(gateway: Gateway) -> None:
    assert gateway.apps is not None and gateway.apps.admin_secret is not None
    body = {"model": "chat", "messages": [{"role": "user", "content": "hello world"}]}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        reply = await client.post(
            "/v1/generate", json=body,
            headers={"authorization": f"Bearer {gateway.apps.admin_secret}"},
        )  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-infergate-cost"] == "0.000018"
    assert reply.json()["usage"]["costUsd"] == pytest.approx(UNARY / 1e9)


def _query(group_by: tuple[str, ...]) -> UsageQuery:
    return UsageQuery(0, 2**62, group_by)
