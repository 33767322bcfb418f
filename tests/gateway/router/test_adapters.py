"""End to end: a gRPC client -> the real gateway -> the openai adapter -> the
local OpenAI fake, over real sockets all the way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from gateway.pb import router_pb2 as pb
from gateway.pb import router_pb2_grpc
from tests.conftest import StartGateway, chat
from tests.fakes.openai_server import OpenAIFake


@pytest.fixture
async def stub(
    openai_fake: OpenAIFake, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[router_pb2_grpc.RouterStub]:
    monkeypatch.setenv("INFERGATE_TEST_OPENAI_KEY", "sk-e2e")
    options: dict[str, Any] = {
        "base_url": openai_fake.base_url,
        "api_key_env": "INFERGATE_TEST_OPENAI_KEY",
    }
    models = {
        "gpt": {"deployments": [{"name": "oa", "provider": "openai", "model": "gpt-fake",
                                 "options": options}]},
        "embed": {"deployments": [{"name": "oa-embed", "provider": "openai",
                                   "model": "text-embed-fake", "options": options}]},
    }  # fmt: skip
    gateway = await start_gateway(models, top={"retry": {"retries": 0}})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield router_pb2_grpc.RouterStub(channel)


async def test_generate_through_the_gateway(stub: router_pb2_grpc.RouterStub) -> None:
    response = await stub.Generate(chat("gpt", params=pb.GenerationParams(max_tokens=16)))
    assert response.text == "Hello from the fake"
    assert (response.deployment, response.finish_reason) == ("oa", "stop")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 4)


async def test_stream_through_the_gateway(
    stub: router_pb2_grpc.RouterStub, openai_fake: OpenAIFake
) -> None:
    chunks = [c async for c in stub.GenerateStream(chat("gpt"), timeout=10)]
    assert "".join(c.delta for c in chunks) == "Hello from the fake"
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage.output_tokens == 4
    assert openai_fake.observed.requests[-1]["stream_options"] == {"include_usage": True}


async def test_dry_run_shows_the_body_the_fake_then_receives(
    stub: router_pb2_grpc.RouterStub, openai_fake: OpenAIFake
) -> None:
    request = chat("gpt", params=pb.GenerationParams(temperature=0.5, stop=["END"]))
    decision = await stub.Route(request)
    shown = json_format.MessageToDict(decision.upstream_request)
    await stub.Generate(request)
    assert shown == openai_fake.observed.requests[-1]
    assert shown["stop"] == ["END"] and shown["model"] == "gpt-fake"


async def test_the_dry_run_body_is_the_bytes_the_upstream_receives(
    stub: router_pb2_grpc.RouterStub, openai_fake: OpenAIFake
) -> None:
    request = chat("gpt", params=pb.GenerationParams(max_tokens=20, temperature=0.5))
    decision = await stub.Route(request)
    await stub.Generate(request)
    assert decision.upstream_body.encode() == openai_fake.observed.bodies[-1]
    assert '"max_tokens":20' in decision.upstream_body  # an integer, not 20.0


async def test_upstream_rate_limit_reaches_the_client_with_retry_after(
    stub: router_pb2_grpc.RouterStub, openai_fake: OpenAIFake
) -> None:
    openai_fake.script.status, openai_fake.script.retry_after = 429, "30"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(chat("gpt"))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(caught.value.trailing_metadata() or ())
    assert float(trailers["retry-after"]) == 30


async def test_stream_cut_after_the_first_token_ends_with_an_error(
    stub: router_pb2_grpc.RouterStub, openai_fake: OpenAIFake
) -> None:
    openai_fake.script.cut_after = 2
    deltas: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for chunk in stub.GenerateStream(chat("gpt"), timeout=10):
            deltas.append(chunk.delta)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "".join(deltas) == "Hello from"


async def test_embed_through_the_gateway(stub: router_pb2_grpc.RouterStub) -> None:
    response = await stub.Embed(pb.EmbedRequest(model="embed", inputs=["a", "bb"]))
    assert [list(e.values)[:2] for e in response.embeddings] == [[1.0, 0.0], [3.0, 1.0]]
