"""The onnx provider: embeddings through the Provider interface and through
the gateway's Router.Embed over a real channel; everything else refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from adapters import build_provider
from adapters.onnx import OnnxProvider
from gateway.pb import router_pb2 as pb
from gateway.pb import router_pb2_grpc
from router.config import DeploymentConfig
from router.errors import ErrorKind, ProviderError
from router.types import Message, Request
from tests.conftest import StartGateway

ASK = Request(model="tiny", messages=(Message("user", "hello"),))


async def test_embed_counts_tokens_and_normalises(tiny_model: Path) -> None:
    provider = OnnxProvider("tiny", {"model_dir": str(tiny_model), "threads": 1})
    result = await provider.embed(["cats chase mice", "dogs"])
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.usage.input_tokens == 5 + 3  # [CLS] and [SEP] included
    await provider.probe()
    await provider.aclose()


async def test_generation_is_refused_as_a_bad_request(tiny_model: Path) -> None:
    provider = OnnxProvider("tiny", {"model_dir": str(tiny_model)})
    with pytest.raises(ProviderError, match="embedding-only") as unary:
        await provider.generate(ASK, None)
    assert unary.value.kind is ErrorKind.BAD_REQUEST and not unary.value.retryable
    with pytest.raises(ProviderError) as streamed:
        async for _ in provider.stream(ASK, None):
            pass
    assert streamed.value.kind is ErrorKind.BAD_REQUEST
    assert provider.upstream_request(ASK)["model_dir"] == str(tiny_model)
    await provider.aclose()


async def test_a_closed_provider_is_unavailable(tiny_model: Path) -> None:
    provider = OnnxProvider("tiny", {"model_dir": str(tiny_model)})
    await provider.aclose()
    with pytest.raises(ProviderError) as caught:
        await provider.probe()
    assert caught.value.kind is ErrorKind.UNAVAILABLE


def test_build_provider_names_a_missing_model(tmp_path: Path) -> None:
    deployment = DeploymentConfig(
        name="e", provider="onnx", model="m", options={"model_dir": str(tmp_path)}
    )
    with pytest.raises(ValueError, match=r"options\.model_dir.*infergate model fetch"):
        build_provider(deployment)
    with pytest.raises(ValueError, match="model_dir"):
        build_provider(DeploymentConfig(name="e", provider="onnx", model="m"))


async def test_router_embed_over_grpc(start_gateway: StartGateway, tiny_model: Path) -> None:
    deployment = {"name": "tiny-a", "provider": "onnx", "model": "tiny"}
    models = {"tiny": {"deployments": [{**deployment, "options": {"model_dir": str(tiny_model)}}]}}
    gateway = await start_gateway(models)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        texts = ["cats chase mice", "dogs chase cats", "cold winter weather"]
        reply = await stub.Embed(pb.EmbedRequest(model="tiny", inputs=texts), timeout=10)
        vectors = np.array([e.values for e in reply.embeddings])
        assert vectors.shape == (3, 64) and reply.deployment == "tiny-a"
        assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            hello = pb.Message(role="user", content="hello")
            await stub.Generate(pb.GenerateRequest(model="tiny", messages=[hello]), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "embedding-only" in (caught.value.details() or "")


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from indexer.testmodel import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"))


DOCS = ["the weather is cold", "dogs chase cats", "cats chase mice"]


async def test_rerank_with_the_cross_encoder_orders_by_overlap(cross_encoder: Path) -> None:
    from indexer.rerank import OnnxCrossEncoder

    provider = OnnxProvider("tiny-rerank", {"cross_encoder_dir": str(cross_encoder), "threads": 1})
    ranking = await provider.rerank("cats chase mice", DOCS, 2, None)
    assert [r.index for r in ranking.results] == [2, 1]
    reference = OnnxCrossEncoder(cross_encoder, threads=1)  # the same model, read directly
    scores = await reference.score("cats chase mice", DOCS)
    assert [r.score for r in ranking.results] == pytest.approx([scores[2], scores[1]], abs=1e-5)
    await reference.aclose()
    await provider.probe()
    with pytest.raises(ProviderError) as refused:  # no model_dir: no embeddings
        await provider.embed(["x"])
    assert refused.value.kind is ErrorKind.UNIMPLEMENTED
    assert "model_dir" in str(refused.value)
    await provider.aclose()


async def test_an_embedding_deployment_answers_rerank_unimplemented(tiny_model: Path) -> None:
    provider = OnnxProvider("tiny", {"model_dir": str(tiny_model)})
    with pytest.raises(ProviderError) as refused:
        await provider.rerank("q", ["x"], 0, None)
    assert refused.value.kind is ErrorKind.UNIMPLEMENTED
    assert "cross_encoder_dir" in str(refused.value)
    await provider.aclose()


def test_a_missing_cross_encoder_is_a_config_error(tmp_path: Path) -> None:
    options = {"cross_encoder_dir": str(tmp_path)}
    with pytest.raises(ValueError, match=r"options\.cross_encoder_dir.*no cross-encoder model"):
        build_provider(DeploymentConfig(name="r", provider="onnx", model="m", options=options))


async def test_router_rerank_over_grpc(
    start_gateway: StartGateway, tiny_model: Path, cross_encoder: Path
) -> None:
    both = {"model_dir": str(tiny_model), "cross_encoder_dir": str(cross_encoder)}
    deployment = {"name": "local", "provider": "onnx", "model": "tiny", "options": both}
    gateway = await start_gateway({"tiny": {"deployments": [deployment]}})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        ask = pb.RerankRequest(model="tiny", query="cats chase mice", documents=DOCS,
                               return_documents=True)  # fmt: skip
        reply = await stub.Rerank(ask, timeout=10)
        assert reply.deployment == "local"
        assert [r.index for r in reply.results] == [2, 1, 0]
        assert [r.document for r in reply.results] == [DOCS[2], DOCS[1], DOCS[0]]
        scores = [r.relevance_score for r in reply.results]
        assert scores == sorted(scores, reverse=True)
        embedded = await stub.Embed(pb.EmbedRequest(model="tiny", inputs=["x"]), timeout=10)
        assert len(embedded.embeddings[0].values) == 64  # one deployment serves both
