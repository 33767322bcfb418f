"""Search with rerank through the public gRPC Dataset API, on the tiny test
embedding model and the tiny hand-set cross-encoder (indexer.testmodel)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.pb import dataset_pb2 as pb
from gateway.pb import dataset_pb2_grpc, router_pb2
from indexer.testmodel import build_tiny_cross_encoder
from tests.conftest import StartGateway
from tests.gateway.dataset.test_service import dataset_top, open_stub

DOCS = {
    "exact": "cats chase mice",
    "two": "dogs chase cats",
    "one": "mice eat cheese and bread",
    "food": "pizza pasta cheese bread",
    "weather": "rain snow wind storm",
    "music": "guitar piano song",
}


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("cross-encoder"))


async def serve(
    start_gateway: StartGateway, tmp_path: Path, tiny_model: Path, **reranker: Any
) -> AsyncIterator[dataset_pb2_grpc.DatasetStub]:
    top = dataset_top(tmp_path / "data", embedder={"model_dir": str(tiny_model)})
    if reranker:
        top["dataset"]["reranker"] = reranker
    channel, stub = await open_stub(start_gateway, top)
    async with channel:
        await stub.CreateCollection(pb.CreateCollectionRequest(collection_id="docs"))
        await stub.UpsertDocuments(
            pb.UpsertDocumentsRequest(
                collection="collections/docs",
                documents=[pb.Document(id=i, text=t) for i, t in DOCS.items()],
            )
        )
        yield stub


@pytest.fixture
async def stub(
    start_gateway: StartGateway, tmp_path: Path, tiny_model: Path, cross_encoder: Path
) -> AsyncIterator[dataset_pb2_grpc.DatasetStub]:
    async for stub in serve(
        start_gateway, tmp_path, tiny_model, kind="onnx", model_dir=str(cross_encoder), threads=1
    ):
        yield stub


def search(**fields: Any) -> pb.SearchRequest:
    return pb.SearchRequest(collection="collections/docs", text="cats chase mice", **fields)


async def test_rerank_returns_k_results_by_rerank_score_with_both_scores(
    stub: dataset_pb2_grpc.DatasetStub,
) -> None:
    plain = await stub.Search(search(k=6))
    assert not any(r.HasField("rerank_score") for r in plain.results)
    found = await stub.Search(search(k=3, rerank=True, rerank_top_n=6))
    assert len(found.results) == 3
    assert all(r.HasField("rerank_score") and r.score > 0 for r in found.results)
    reranked = [r.rerank_score for r in found.results]
    assert reranked == sorted(reranked, reverse=True)
    # The hand-set model scores shared words: the exact passage wins (logit 8 - 4).
    assert [r.chunk.document_id for r in found.results] == ["exact", "two", "one"]
    assert reranked[0] == pytest.approx(4.0, abs=1e-4)
    retrieval = {r.chunk.document_id: r.score for r in plain.results}
    assert all(r.score == pytest.approx(retrieval[r.chunk.document_id]) for r in found.results)


async def test_rerank_top_n_bounds_the_candidates_and_min_score_the_retrieval_score(
    stub: dataset_pb2_grpc.DatasetStub,
) -> None:
    lexical = pb.SEARCH_MODE_LEXICAL
    plain = await stub.Search(search(k=6, mode=lexical))
    assert {r.chunk.document_id for r in plain.results} == {"exact", "two", "one"}
    cut = plain.results[1].score
    found = await stub.Search(search(k=5, mode=lexical, rerank=True, min_score=cut))
    kept = [r.chunk.document_id for r in plain.results if r.score >= cut]
    assert sorted(r.chunk.document_id for r in found.results) == sorted(kept)
    assert all(r.score >= cut for r in found.results) and len(kept) < 3
    reranked = [r.rerank_score for r in found.results]
    assert reranked == sorted(reranked, reverse=True)


@pytest.mark.parametrize("top_n", [-1, 1001])
async def test_a_bad_rerank_top_n_is_invalid_argument(
    stub: dataset_pb2_grpc.DatasetStub, top_n: int
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Search(search(rerank=True, rerank_top_n=top_n))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "rerank_top_n" in (caught.value.details() or "")


async def test_rerank_of_a_vector_query_is_invalid_argument(
    stub: dataset_pb2_grpc.DatasetStub,
) -> None:
    request = pb.SearchRequest(
        collection="collections/docs", vector=router_pb2.Embedding(values=[0.125] * 64), rerank=True
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Search(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "needs query text" in (caught.value.details() or "")


@pytest.mark.parametrize(
    ("reranker", "message"),
    [
        ({}, "no reranker is configured"),
        ({"kind": "onnx", "model_dir": "/nonexistent/reranker"}, "missing model.onnx"),
    ],
)
async def test_rerank_without_a_working_reranker_is_failed_precondition(
    start_gateway: StartGateway, tmp_path: Path, tiny_model: Path,
    reranker: dict[str, Any], message: str,
) -> None:  # fmt: skip
    async for stub in serve(start_gateway, tmp_path, tiny_model, **reranker):
        assert len((await stub.Search(search(k=2))).results) == 2  # search without still works
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Search(search(rerank=True))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert message in (caught.value.details() or "")
