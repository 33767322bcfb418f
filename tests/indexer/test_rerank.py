# ruff: noqa: F811  (the exporter fixture, imported from tests/traces.py, is a parameter here)
"""The ONNX cross-encoder on the tiny test model, and the Datasets rerank stage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from indexer.datasets import Datasets
from indexer.documents import DocumentInput, Mode, Query
from indexer.errors import InvalidInput, NotReady
from indexer.onnx_embedder import OnnxEmbedder
from indexer.rerank import OnnxCrossEncoder, Pair
from indexer.testmodel import (
    CROSS_ENCODER_SCALE,
    CROSS_ENCODER_SHIFT,
    MAX_TOKENS,
    build_tiny_cross_encoder,
    cross_encoder_vectors,
)
from tests.traces import exporter, one, parent_of, span_id  # noqa: F401 (a fixture)

QUERY = "cats chase mice"
TEXTS = [
    "dogs chase cats in the garden",
    "cats chase mice",
    "pizza with cheese and bread",
    "the cat sleeps",
    "mice eat cheese",
]


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("cross-encoder"))


@pytest.fixture
async def reranker(cross_encoder_dir: Path) -> AsyncIterator[OnnxCrossEncoder]:
    model = OnnxCrossEncoder(cross_encoder_dir, threads=1)
    yield model
    await model.aclose()


def reference(pairs: Sequence[Pair]) -> list[float]:
    """The tiny model's logit in float64 numpy, independently of its ONNX graph."""
    vectors = cross_encoder_vectors().astype(np.float64)
    out = []
    for ids, types in pairs:
        rows, sides = vectors[np.asarray(ids)], np.asarray(types)[:, None]
        query, passage = (rows * (1 - sides)).sum(0), (rows * sides).sum(0)
        cosine = query @ passage / np.sqrt((query @ query + 1e-12) * (passage @ passage + 1e-12))
        out.append(CROSS_ENCODER_SCALE * cosine + CROSS_ENCODER_SHIFT)
    return out


async def test_scores_match_a_numpy_reference_of_the_same_weights(
    reranker: OnnxCrossEncoder,
) -> None:
    scores = await reranker.score(QUERY, TEXTS)
    assert len(scores) == len(TEXTS) and all(isinstance(s, float) for s in scores)
    np.testing.assert_allclose(scores, reference(reranker.pairs(QUERY, TEXTS)), atol=1e-5)
    assert scores == await reranker.score(QUERY, TEXTS)  # deterministic


async def test_more_shared_words_score_higher(reranker: OnnxCrossEncoder) -> None:
    exact, two_words, unrelated = await reranker.score(
        QUERY, ["cats chase mice", "dogs chase cats", "pizza with cheese"]
    )
    assert exact == pytest.approx(CROSS_ENCODER_SCALE + CROSS_ENCODER_SHIFT, abs=1e-5)
    assert exact > two_words > unrelated


async def test_concurrent_calls_share_model_calls_and_score_as_one_by_one(
    reranker: OnnxCrossEncoder,
) -> None:
    alone = [(await reranker.score(QUERY, [text]))[0] for text in TEXTS]
    calls = reranker.inference_calls
    together = await asyncio.gather(*(reranker.score(QUERY, [text]) for text in TEXTS))
    assert [s for (s,) in together] == pytest.approx(alone, abs=1e-5)
    assert reranker.inference_calls - calls < len(TEXTS)  # batched
    assert await reranker.score(QUERY, TEXTS) == pytest.approx(alone, abs=1e-5)


async def test_pairs_are_bert_style_and_truncated_longer_side_first(
    reranker: OnnxCrossEncoder,
) -> None:
    tokenizer = reranker._tokenizer
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    ((ids, types),) = reranker.pairs("cats", ["dogs run"])
    assert ids == [cls, tokenizer.token_to_id("cats"), sep, *tokenizer.encode(
        "dogs run", add_special_tokens=False).ids, sep]  # fmt: skip
    assert types == [0, 0, 0, 1, 1, 1]
    assert reranker.max_tokens == MAX_TOKENS  # config.json caps the default 512
    long = " ".join(["dog"] * 200)
    (short_query, long_passage), (long_query, _) = (
        reranker.pairs(QUERY, [long])[0], reranker.pairs(long, [long])[0],
    )  # fmt: skip
    assert len(short_query) == MAX_TOKENS and short_query[1:4] == tokenizer.encode(
        QUERY, add_special_tokens=False).ids  # fmt: skip
    assert long_passage.count(0) == 5 and long_passage[-1] == 1  # the query kept whole
    assert len(long_query) == MAX_TOKENS and long_query.count(sep) == 2
    assert len(await reranker.score(long, [long, "dog"])) == 2


async def test_empty_input_and_a_missing_model(reranker: OnnxCrossEncoder, tmp_path: Path) -> None:
    assert await reranker.score(QUERY, []) == []
    with pytest.raises(NotReady, match=r"missing model\.onnx, tokenizer\.json"):
        OnnxCrossEncoder(tmp_path)


class ReversingReranker:
    """A fake Reranker: the later a candidate came, the higher it scores."""

    model = "reversing"

    def __init__(self) -> None:
        self.seen: list[list[str]] = []
        self.closed = False

    async def score(self, query: str, texts: Sequence[str]) -> list[float]:
        self.seen.append(list(texts))
        return [float(i) for i in range(len(texts))]

    async def aclose(self) -> None:
        self.closed = True


DOCS = {f"d{i}": " ".join(["cats chase mice"] * (10 - i) + ["pizza"] * i) for i in range(8)}


@pytest.fixture
async def datasets(
    tmp_path: Path, tiny_model: Path
) -> AsyncIterator[tuple[Datasets, ReversingReranker]]:
    fake = ReversingReranker()
    ds = Datasets(tmp_path, OnnxEmbedder(tiny_model), "tiny", reranker=fake)
    await ds.create("acme", "docs")
    await ds.upsert("acme", "docs", [DocumentInput(id=i, text=t) for i, t in DOCS.items()])
    yield ds, fake
    await ds.aclose()
    assert fake.closed


async def test_datasets_rerank_the_top_n_candidates_and_keep_both_scores(
    datasets: tuple[Datasets, ReversingReranker],
) -> None:
    ds, fake = datasets
    query = Query("cats chase mice", mode=Mode.LEXICAL, k=2)
    plain = await ds.search("acme", "docs", replace(query, k=5))
    assert all(hit.rerank_score is None for hit in plain)
    hits = await ds.search("acme", "docs", replace(query, rerank=True, rerank_top_n=5))
    assert fake.seen == [[hit.chunk.text for hit in plain]]  # the top 5, in retrieval order
    assert [hit.chunk.document_id for hit in hits] == [
        plain[4].chunk.document_id, plain[3].chunk.document_id,
    ]  # fmt: skip
    assert [hit.rerank_score for hit in hits] == [4.0, 3.0]
    assert [hit.score for hit in hits] == [plain[4].score, plain[3].score]


async def test_datasets_rerank_depth_defaults_to_50_and_is_never_below_k(
    datasets: tuple[Datasets, ReversingReranker],
) -> None:
    ds, fake = datasets
    await ds.search("acme", "docs", Query("pizza", mode=Mode.LEXICAL, k=1, rerank=True))
    await ds.search("acme", "docs", Query("cats", mode=Mode.LEXICAL, k=6, rerank=True,
                                         rerank_top_n=2))  # fmt: skip
    assert [len(texts) for texts in fake.seen] == [7, 6]  # every match (of 50), then k


async def test_datasets_min_score_applies_to_the_retrieval_score(
    datasets: tuple[Datasets, ReversingReranker],
) -> None:
    ds, fake = datasets
    plain = await ds.search("acme", "docs", Query("pizza", mode=Mode.LEXICAL, k=10))
    cut = plain[2].score
    hits = await ds.search(
        "acme", "docs", Query("pizza", mode=Mode.LEXICAL, k=10, min_score=cut, rerank=True)
    )
    assert len(fake.seen[0]) == 3 and all(hit.score >= cut for hit in hits)
    assert hits[0].rerank_score == 2.0


async def test_datasets_rerank_errors(
    datasets: tuple[Datasets, ReversingReranker], tmp_path: Path, tiny_model: Path
) -> None:
    ds, _ = datasets
    for top_n in (-1, 1001):
        with pytest.raises(InvalidInput, match="rerank_top_n"):
            await ds.search("acme", "docs", Query("cats", rerank=True, rerank_top_n=top_n))
    for k in (-3, 0, 10_000):  # the stage widens k for its candidates: k is checked first
        with pytest.raises(InvalidInput, match="k: must be in"):
            await ds.search("acme", "docs", Query("cats", k=k, rerank=True))
    vector = np.ones(64, np.float32) / 8
    with pytest.raises(InvalidInput, match="rerank: needs query text"):
        await ds.search("acme", "docs", Query(vector=vector, mode=Mode.DENSE, rerank=True))
    bare = Datasets(tmp_path / "bare", OnnxEmbedder(tiny_model), "tiny")
    with pytest.raises(NotReady, match="no reranker is configured"):
        await bare.search("acme", "docs", Query("cats", rerank=True))
    await bare.aclose()


async def test_the_rerank_stage_has_a_span_under_the_search(
    datasets: tuple[Datasets, ReversingReranker], exporter: InMemorySpanExporter
) -> None:
    ds, _ = datasets
    await ds.search("acme", "docs", Query("cats", k=3, rerank=True, rerank_top_n=5))
    done = exporter.get_finished_spans()
    rerank = one(done, "infergate.retrieval.rerank")
    assert parent_of(rerank) == span_id(one(done, "infergate.retrieval.search"))
    assert dict(rerank.attributes or {}) == {
        "infergate.candidates": 5, "infergate.model": "reversing",
    }  # fmt: skip
