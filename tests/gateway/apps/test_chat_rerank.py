"""An app that reranks, chatting through the public gRPC App API on a started
gateway with the real Dataset layer: the tiny embedding model and the tiny
hand-set cross-encoder (indexer.testmodel)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.apps.retrieval import Passage, Retriever
from gateway.pb import app_pb2 as pb
from gateway.pb import app_pb2_grpc, dataset_pb2, dataset_pb2_grpc
from gateway.server import Gateway
from indexer.testmodel import build_tiny_cross_encoder
from tests.conftest import StartGateway
from tests.gateway.apps.test_auth import bearer, new_key, secure_top

# Two collections: the chat merges their candidates by the one cross-encoder's
# score. Without rerank, hybrid fusion ranks each collection's best alike, so
# "far" is cited second; the cross-encoder prefers "near".
COLLECTIONS = {
    "pets": {"exact": "cats chase mice", "near": "cats chase mice and dogs"},
    "more": {"far": "mice eat cheese", "food": "pizza pasta bread"},
}
QUERY = "cats chase mice"


class RecordingRetriever:
    """The gateway's own retriever, with every search's options written down."""

    def __init__(self, inner: Retriever) -> None:
        self.inner = inner
        self.calls: list[dict[str, Any]] = []

    async def search(
        self, tenant: str, collections: Sequence[str], query: str, k: int, score_threshold: float,
        *, mode: str = "", filter: Mapping[str, Any] | None = None,
        rerank: bool = False, rerank_top_n: int = 0,
    ) -> list[Passage]:  # fmt: skip
        self.calls.append({"k": k, "rerank": rerank, "rerank_top_n": rerank_top_n})
        return await self.inner.search(
            tenant, collections, query, k, score_threshold, mode=mode, filter=filter,
            rerank=rerank, rerank_top_n=rerank_top_n,
        )  # fmt: skip


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("cross-encoder"))


async def start(
    start_gateway: StartGateway, tmp_path: Path, tiny_model: Path, **reranker: Any
) -> Gateway:
    top = secure_top(tmp_path)
    top["dataset"] = {"snapshot_interval_s": 0, "embedder": {"model_dir": str(tiny_model)}}
    if reranker:
        top["dataset"]["reranker"] = reranker
    return await start_gateway(top=top)


async def fill(channel: grpc.aio.Channel, md: Any) -> None:
    datasets = dataset_pb2_grpc.DatasetStub(channel)
    for collection, documents in COLLECTIONS.items():
        await datasets.CreateCollection(
            dataset_pb2.CreateCollectionRequest(collection_id=collection), metadata=md
        )
        await datasets.UpsertDocuments(
            dataset_pb2.UpsertDocumentsRequest(
                collection=f"collections/{collection}",
                documents=[dataset_pb2.Document(id=i, text=t) for i, t in documents.items()],
            ),
            metadata=md,
        )


def app(app_id: str, **retrieval: Any) -> pb.CreateAppRequest:
    names = [f"collections/{c}" for c in COLLECTIONS]
    spec = pb.AppSpec(model="chat", retrieval=pb.Retrieval(collections=names, k=2, **retrieval))
    return pb.CreateAppRequest(app_id=app_id, app=spec)


async def citations(stub: app_pb2_grpc.AppStub, md: Any, app_id: str) -> list[pb.Citation]:
    request = pb.ChatRequest(app=f"apps/{app_id}", query=QUERY)
    events = [e async for e in stub.Chat(request, metadata=md)]
    assert events[-1].WhichOneof("event") == "done"
    return [e.citation for e in events if e.WhichOneof("event") == "citation"]


@pytest.fixture
async def reranking(
    start_gateway: StartGateway, tmp_path: Path, tiny_model: Path, cross_encoder: Path
) -> AsyncIterator[tuple[Gateway, grpc.aio.Channel, Any]]:
    gateway = await start(
        start_gateway, tmp_path, tiny_model, kind="onnx", model_dir=str(cross_encoder), threads=1
    )
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        md = bearer(await new_key(channel, gateway, "acme", "developer"))
        await fill(channel, md)
        yield gateway, channel, md


async def test_an_app_with_rerank_cites_by_the_cross_encoders_score(
    reranking: tuple[Gateway, grpc.aio.Channel, Any],
) -> None:
    gateway, channel, md = reranking
    assert gateway.apps is not None
    recorder = RecordingRetriever(gateway.apps.chat.retriever)
    gateway.apps.chat.retriever = recorder
    stub = app_pb2_grpc.AppStub(channel)
    await stub.CreateApp(app("plain"), metadata=md)
    await stub.CreateApp(app("reranked", rerank=True, rerank_top_n=6), metadata=md)

    plain = await citations(stub, md, "plain")
    assert [c.document_id for c in plain] == ["exact", "far"]  # rank 1 of each collection
    assert not any(c.HasField("rerank_score") for c in plain)
    reranked = await citations(stub, md, "reranked")
    assert [(c["rerank"], c["rerank_top_n"]) for c in recorder.calls] == [(False, 0), (True, 6)]

    # The hand-set model scores shared words: the exact passage wins (logit 8 - 4),
    # and the second of its collection beats the other collection's best.
    assert [(c.collection, c.document_id) for c in reranked] == [
        ("collections/pets", "exact"), ("collections/pets", "near"),
    ]  # fmt: skip
    assert all(c.HasField("rerank_score") for c in reranked)
    scores = [c.rerank_score for c in reranked]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(4.0, abs=1e-4)
    # `score` stays the retrieval score, which alone would have ranked "near" lower.
    assert reranked[0].score == pytest.approx(plain[0].score)
    assert 0 < reranked[1].score < plain[1].score

    completion = await stub.Completion(
        pb.ChatRequest(app="apps/reranked", query=QUERY), metadata=md
    )
    assert [c.document_id for c in completion.citations] == ["exact", "near"]
    assert completion.citations[0].rerank_score == pytest.approx(4.0, abs=1e-4)


async def test_an_app_with_rerank_on_a_gateway_without_a_reranker_is_failed_precondition(
    start_gateway: StartGateway, tmp_path: Path, tiny_model: Path
) -> None:
    gateway = await start(start_gateway, tmp_path, tiny_model)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        md = bearer(await new_key(channel, gateway, "acme", "developer"))
        await fill(channel, md)
        stub = app_pb2_grpc.AppStub(channel)
        await stub.CreateApp(app("plain"), metadata=md)
        await stub.CreateApp(app("reranked", rerank=True), metadata=md)
        assert len(await citations(stub, md, "plain")) == 2  # chat without rerank still works
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await citations(stub, md, "reranked")
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no reranker is configured" in (caught.value.details() or "")
