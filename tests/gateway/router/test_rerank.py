"""Router.Rerank through a started gateway over a real channel: the mock's
word-overlap scores, failover, UNIMPLEMENTED for an alias that cannot rerank,
validation naming the field, and the cohere adapter against its fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from gateway.pb import router_pb2 as pb
from gateway.pb import router_pb2_grpc
from tests.conftest import StartGateway
from tests.fakes.rerank_server import RerankFake

DOCS = ["the weather is cold", "dogs chase cats", "cats chase mice"]
MODELS: dict[str, Any] = {
    "rerank": {"deployments": [
        {"name": "broken", "provider": "mock", "model": "error", "weight": 5},
        {"name": "words", "provider": "mock", "model": "echo"},
    ]},
    "chat": {"deployments": [
        {"name": "oa", "provider": "openai", "model": "gpt", "options": {"base_url": "http://127.0.0.1:9/v1"}},
    ]},
}  # fmt: skip


@pytest.fixture
async def stub(start_gateway: StartGateway) -> AsyncIterator[router_pb2_grpc.RouterStub]:
    gateway = await start_gateway(MODELS, top={"retry": {"retries": 0}})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield router_pb2_grpc.RouterStub(channel)


async def test_rerank_fails_over_and_orders_by_relevance(
    stub: router_pb2_grpc.RouterStub,
) -> None:
    ask = pb.RerankRequest(model="rerank", query="cats chase mice", documents=DOCS, top_n=2)
    reply = await stub.Rerank(ask, timeout=10)
    assert (reply.model, reply.deployment) == ("rerank", "words")
    assert [(r.index, round(r.relevance_score, 3)) for r in reply.results] == [(2, 1.0), (1, 0.667)]
    assert all(r.document == "" for r in reply.results)  # not asked for
    assert reply.usage.input_tokens == 3 * 3 + 4 + 3 + 3


async def test_an_alias_without_a_reranker_is_unimplemented(
    stub: router_pb2_grpc.RouterStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.Rerank(pb.RerankRequest(model="chat", query="q", documents=["d"]), timeout=10)
    assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "no rerank" in (failed.value.details() or "")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"query": "q", "documents": ["d"]}, "model"),
        ({"model": "rerank", "documents": ["d"]}, "query"),
        ({"model": "rerank", "query": "q"}, "documents"),
        ({"model": "rerank", "query": "q", "documents": ["d"] * 1001}, "documents"),
        ({"model": "rerank", "query": "q", "documents": ["d"], "top_n": -1}, "top_n"),
    ],
)
async def test_invalid_requests_name_the_field(
    stub: router_pb2_grpc.RouterStub, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.Rerank(pb.RerankRequest(**fields), timeout=10)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (failed.value.details() or "").startswith(f"{field}: ")


async def test_the_cohere_adapter_end_to_end(
    start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = await RerankFake().start()
    monkeypatch.setenv("INFERGATE_TEST_COHERE_KEY", "co-key")
    options = {"base_url": fake.base_url, "api_key_env": "INFERGATE_TEST_COHERE_KEY"}
    models = {"co": {"deployments": [{"name": "co-a", "provider": "cohere",
                                      "model": "rerank-v3.5", "options": options}]}}  # fmt: skip
    try:
        gateway = await start_gateway(models)
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            ask = pb.RerankRequest(model="co", query="dogs chase cats", documents=DOCS,
                                   return_documents=True)  # fmt: skip
            reply = await stub.Rerank(ask, timeout=10)
        assert (reply.deployment, reply.search_units) == ("co-a", 1)
        assert [r.document for r in reply.results] == [DOCS[1], DOCS[2], DOCS[0]]
        assert fake.observed.requests[0]["model"] == "rerank-v3.5"
        assert fake.observed.headers[0]["authorization"] == "Bearer co-key"
    finally:
        await fake.close()
