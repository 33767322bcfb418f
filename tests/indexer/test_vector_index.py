"""The HNSW graph, the metadata postings, BM25 and the fusion of rankings."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from indexer.collection import rrf, score_fusion
from indexer.errors import InvalidInput
from indexer.filters import Eq, In, MetadataIndex, Range
from indexer.lexical import LexicalIndex
from indexer.params import IndexParams
from indexer.vector_index import VectorIndex

DIMS = 16


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIMS)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def exact(rows: np.ndarray, labels: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = rows @ query
    return [int(labels[i]) for i in np.argsort(-scores)[:k]]


def test_grows_by_resizing_and_finds_each_vector() -> None:
    index = VectorIndex(DIMS, IndexParams(initial_capacity=16))
    rows = unit_rows(500)
    for start in range(0, 500, 100):  # five inserts, each past the capacity
        index.add(np.arange(start, start + 100), rows[start : start + 100])
    assert len(index) == 500
    for label in (0, 137, 499):
        (best, score), *_ = index.search(rows[label], 3)
        assert best == label and score == pytest.approx(1.0, abs=1e-5)


def test_delete_reuses_slots_and_is_never_returned() -> None:
    index = VectorIndex(DIMS, IndexParams(initial_capacity=64))
    rows = unit_rows(64)
    index.add(np.arange(64), rows)
    index.delete(range(0, 32))
    assert all(label >= 32 for label, _ in index.search(rows[0], 10))
    index.add(np.arange(100, 132), rows[:32])  # into the deleted slots, no resize
    assert index._graph.get_max_elements() == 64
    assert index.search(rows[5], 1)[0][0] == 105


def test_fewer_than_k_is_not_an_error() -> None:
    index = VectorIndex(DIMS, IndexParams(exact_threshold=0))
    assert index.search(unit_rows(1)[0], 5) == []
    index.add(np.arange(3), unit_rows(3))
    assert len(index.search(unit_rows(1, seed=9)[0], 10)) == 3
    tight = index.search(unit_rows(1, seed=9)[0], 10, np.array([1], dtype=np.int64))
    assert [label for label, _ in tight] == [1]


@pytest.mark.parametrize(
    ("threshold", "step"),
    [(0, 3), (0, 80), (10_000, 3)],
    ids=["hnsw-then-filter", "filter-inside-hnsw", "exact-subset"],
)
def test_filtered_search_returns_only_allowed_labels(threshold: int, step: int) -> None:
    rows = unit_rows(2000)
    labels = np.arange(2000, dtype=np.int64)
    index = VectorIndex(DIMS, IndexParams(exact_threshold=threshold, ef=200))
    index.add(labels, rows)
    allowed = labels[labels % step == 0]
    query = unit_rows(1, seed=5)[0]
    found = [label for label, _ in index.search(query, 10, allowed)]
    assert len(found) == 10 and all(label % step == 0 for label in found)
    truth = exact(rows[allowed], allowed, query, 10)
    assert len(set(found) & set(truth)) >= 9


def test_snapshot_restores_ef_and_reconciles_with_the_store(tmp_path: Path) -> None:
    params = IndexParams(ef=77)
    index = VectorIndex(DIMS, params)
    rows = unit_rows(50)
    index.add(np.arange(50), rows)
    index.save(tmp_path / "hnsw.bin")
    live = set(range(50)) - {3, 4} | {60}  # the store lost 3 and 4 and gained 60 since
    loaded = VectorIndex.load(tmp_path / "hnsw.bin", DIMS, params, live)
    assert loaded._graph.ef == 77
    assert loaded.missing(sorted(live)) == [60]
    assert 3 not in [label for label, _ in loaded.search(rows[3], 5)]
    assert not (tmp_path / "hnsw.bin.tmp").exists()


def test_metadata_equality_in_and_ranges() -> None:
    meta = MetadataIndex()
    meta.add(1, {"lang": "en", "year": 2020, "tags": ["a", "b"], "author": {"name": "Ada"}})
    meta.add(2, {"lang": "fr", "year": 2022.0, "tags": ["b"], "draft": True})
    meta.add(3, {"lang": "en", "year": "2022", "draft": False})
    assert meta.matching([]) is None
    assert meta.matching([Eq("lang", "en")]).tolist() == [1, 3]
    assert meta.matching([Eq("year", 2022)]).tolist() == [2]  # the string "2022" is not 2022
    assert meta.matching([Eq("tags", "b")]).tolist() == [1, 2]
    assert meta.matching([Eq("author.name", "Ada")]).tolist() == [1]
    meta.add(4, {"draft": 1})
    assert meta.matching([Eq("draft", True)]).tolist() == [2]
    assert meta.matching([Eq("draft", 1)]).tolist() == [4]  # not the cached answer for True
    meta.remove(4)
    assert meta.matching([In("lang", ("fr", "de"))]).tolist() == [2]
    assert meta.matching([Range("year", gte=2020, lt=2022)]).tolist() == [1]
    assert meta.matching([Range("year", gt=2020)]).tolist() == [2]
    assert meta.matching([Eq("lang", "en"), Range("year", lte=2030)]).tolist() == [1]
    assert meta.matching([Eq("missing", 1)]).tolist() == []
    meta.remove(1)
    assert meta.matching([Eq("tags", "b")]).tolist() == [2]
    assert meta.matching([Range("year", lte=2030)]).tolist() == [2]
    with pytest.raises(InvalidInput, match="lang: cannot compare with a dict"):
        meta.matching([Eq("lang", {"x": 1})])


def test_bm25_ranks_by_terms_filters_and_persists(tmp_path: Path) -> None:
    texts = [
        "the gateway routes requests to models",
        "cats chase mice in the garden",
        "the garden has roses and cats",
        "quarterly revenue grew by ten percent",
    ]
    index = LexicalIndex.build([40, 10, 20, 30], texts, generation=7)
    assert [label for label, _ in index.search("cats garden", 5)] == [10, 20]
    assert [label for label, _ in index.search("cats", 5, np.array([20]))] == [20]
    assert index.search("unknownword", 5) == []
    index.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25")
    assert loaded is not None and loaded.generation == 7
    assert loaded.search("revenue", 1) == index.search("revenue", 1)
    assert LexicalIndex.load(tmp_path / "nothing") is None
    # bm25s's tqdm wrappers start no monitor thread that would outlive the build.
    assert "tqdm_monitor" not in {thread.name for thread in threading.enumerate()}


def test_score_fusion_normalises_each_ranking_then_weights() -> None:
    dense = [(1, 0.9), (2, 0.8), (3, 0.5)]  # cosine: 1 -> 1.0, 2 -> 0.75, 3 -> 0.0
    lexical = [(3, 12.0), (4, 9.0), (2, 3.0)]  # BM25: 3 -> 1.0, 4 -> 0.667, 2 -> 0.0
    fused = dict(score_fusion([(dense, 1.0), (lexical, 1.0)]))
    assert fused == pytest.approx({1: 1.0, 2: 0.75, 3: 1.0, 4: 2 / 3})
    ranked = score_fusion([(dense, 1.0), (lexical, 0.5)])
    assert [label for label, _ in ranked] == [1, 2, 3, 4]  # ties broken by label
    assert score_fusion([([(7, 0.3)], 1.0), ([], 1.0)]) == [(7, 1.0)]  # one candidate: 1.0


def test_reciprocal_rank_fusion_weights() -> None:
    dense = [(1, 0.9), (2, 0.8), (3, 0.7)]
    lexical = [(3, 12.0), (4, 9.0)]
    fused = rrf([(dense, 1.0), (lexical, 1.0)], rrf_k=60)
    assert [label for label, _ in fused][:1] == [3]  # in both lists
    assert fused[0][1] == pytest.approx(1 / 63 + 1 / 61)
    dense_only = rrf([(dense, 1.0), (lexical, 0.0)], rrf_k=60)
    assert [label for label, _ in dense_only][:3] == [1, 2, 3]
