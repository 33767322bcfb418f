"""The `retrieval` node with rerank on: validated options, and a run over the
real Dataset layer (tiny embedding model, tiny hand-set cross-encoder)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.apps.workflows.events import SUCCEEDED, NodeFinished
from gateway.dataset.retriever import DatasetRetriever
from indexer.datasets import Datasets
from indexer.documents import DocumentInput
from indexer.onnx_embedder import OnnxEmbedder
from indexer.rerank import OnnxCrossEncoder
from indexer.testmodel import build_tiny_cross_encoder
from tests.gateway.apps.workflows.helpers import FixedRetriever, run, services
from tests.gateway.apps.workflows.test_validate import expect, node, rag


def flow(**search: Any) -> dict[str, Any]:
    return {
        "inputs": {"question": {"type": "string", "required": True}},
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "search", "type": "retrieval", "config": {
                "collections": ["docs", "more"], "query": "{{ start.question }}", **search}},
            {"id": "say", "type": "answer", "config": {"text": "{{ search.text }}"}},
        ],
        "edges": [{"from": "start", "to": "search"}, {"from": "search", "to": "say"}],
        "outputs": {"answer": "{{ say.text }}", "score": "{{ search.top_score }}"},
    }  # fmt: skip


def search_outputs(events: list[Any]) -> dict[str, Any]:
    done = next(e for e in events if isinstance(e, NodeFinished) and e.node == "search")
    assert done.status == SUCCEEDED, done
    outputs: dict[str, Any] = done.outputs
    return outputs


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [("rerank_top_n", 0, "0"), ("rerank_top_n", 1001, "1001"), ("rerank", "yes", "yes")],
)
def test_rerank_options_are_validated(option: str, value: Any, fragment: str) -> None:
    raw = rag()
    node(raw, "search")["config"][option] = value
    expect(raw, "search", f"config.{option}", fragment)


async def test_the_node_passes_rerank_to_the_retriever() -> None:
    retriever = FixedRetriever()
    events = await run(
        flow(rerank=True, rerank_top_n=20), {"question": "leave"}, services(retriever=retriever)
    )
    search_outputs(events)
    assert [(c["rerank"], c["rerank_top_n"]) for c in retriever.calls] == [(True, 20)]
    await run(flow(), {"question": "leave"}, services(retriever=retriever))
    assert (retriever.calls[-1]["rerank"], retriever.calls[-1]["rerank_top_n"]) == (False, 0)


@pytest.fixture
async def datasets(tmp_path: Path, tiny_model: Path) -> AsyncIterator[Datasets]:
    reranker = OnnxCrossEncoder(build_tiny_cross_encoder(tmp_path / "reranker"), threads=1)
    ds = Datasets(tmp_path / "data", OnnxEmbedder(tiny_model), "tiny", reranker=reranker)
    texts = {
        "docs": {"exact": "cats chase mice", "food": "pizza and cheese"},
        "more": {"two": "dogs chase cats", "rain": "rain and snow"},
    }
    for collection, documents in texts.items():
        await ds.create("acme", collection)
        await ds.upsert(
            "acme", collection, [DocumentInput(id=i, text=t) for i, t in documents.items()]
        )
    yield ds
    await ds.aclose()


async def test_a_reranked_search_over_two_collections_orders_by_rerank_score(
    datasets: Datasets,
) -> None:
    svc = services(retriever=DatasetRetriever(datasets))
    events = await run(flow(k=3, rerank=True), {"question": "cats chase mice"}, svc)
    outputs = search_outputs(events)
    chunks = outputs["chunks"]
    assert [c["document_id"] for c in chunks][:2] == ["exact", "two"]
    assert [c["collection"] for c in chunks][:2] == ["collections/docs", "collections/more"]
    reranked = [c["rerank_score"] for c in chunks]
    assert len(chunks) == 3 and reranked == sorted(reranked, reverse=True)
    assert all(c["score"] > 0 for c in chunks)  # the retrieval score is kept beside it
    assert outputs["top_score"] == pytest.approx(reranked[0]) == pytest.approx(4.0, abs=1e-4)
    plain = search_outputs(await run(flow(k=3), {"question": "cats chase mice"}, svc))
    assert all("rerank_score" not in c for c in plain["chunks"])


async def test_a_reranked_search_without_a_reranker_fails_the_node(
    tmp_path: Path, tiny_model: Path
) -> None:
    ds = Datasets(tmp_path, OnnxEmbedder(tiny_model), "tiny")
    for collection in ("docs", "more"):
        await ds.create("acme", collection)
    events = await run(
        flow(rerank=True), {"question": "cats"}, services(retriever=DatasetRetriever(ds))
    )
    done = next(e for e in events if isinstance(e, NodeFinished) and e.node == "search")
    assert done.status != SUCCEEDED and "no reranker is configured" in str(done.error)
    await ds.aclose()
