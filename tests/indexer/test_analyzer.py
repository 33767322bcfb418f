"""The lexical analyzer: normalisation, stop words, stemming, identifiers kept
whole, per-collection settings, and indexes built before it rebuilt."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from indexer.analyzer import Analysis, Analyzer
from indexer.datasets import Datasets
from indexer.documents import DocumentInput, Mode, Query
from indexer.errors import InvalidInput
from indexer.lexical import LexicalIndex
from tests.indexer.test_collection import datasets, reopen  # noqa: F401  (the fixture)


def test_english_terms() -> None:
    terms = Analyzer().terms
    assert terms("The Streams are RUNNING, and it runs!") == ["stream", "run", "run"]
    # NFKC and case folding: a ligature and the German sharp s.
    assert terms("ﬁle STRASSE Straße") == ["file", "strass", "strass"]
    # Identifiers stay whole and unstemmed; a snake_case one adds its parts.
    assert terms("ERR_QUOTA_4291 at max_concurrent_streams via gpt4o") == [
        "err_quota_4291", "max_concurrent_streams", "gpt4o", "err", "quota", "max",
        "concurr", "stream", "via",
    ]  # fmt: skip
    assert terms("2024 v2") == ["v2", "2024"]  # numbers: not stop words, not stemmed away


def test_other_languages_and_none() -> None:
    assert Analyzer(Analysis("french")).terms("les chevaux mangeaient") == ["cheval", "mang"]
    assert Analyzer(Analysis("none")).terms("The Streams running") == ["the", "streams", "running"]


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(InvalidInput, match=r"collection\.lexical\.language.*klingon"):
        Analysis("klingon")
    with pytest.raises(InvalidInput, match=r"collection\.lexical\.k1"):
        Analysis(k1=0)
    with pytest.raises(InvalidInput, match=r"collection\.lexical\.b"):
        Analysis(b=1.5)


def test_stemmed_words_and_exact_identifiers_are_found() -> None:
    texts = [
        "Requests over quota fail with ERR_QUOTA_4291 and a retry hint.",
        "Raise max_concurrent_streams for long-lived streaming calls.",
        "The cat sleeps in the garden.",
    ]
    index = LexicalIndex.build([1, 2, 3], texts, generation=1)
    assert [label for label, _ in index.search("err_quota_4291", 3)] == [1]
    assert [label for label, _ in index.search("ERR_QUOTA_4291", 3)] == [1]
    assert [label for label, _ in index.search("max_concurrent_streams", 3)] == [2]
    assert [label for label, _ in index.search("concurrent stream", 3)] == [2]  # parts, stemmed
    assert [label for label, _ in index.search("sleeping cats", 3)] == [3]  # stems
    assert index.search("the and with", 3) == []  # only stop words


def test_bm25_parameters_are_used() -> None:
    texts = ["apple " * 8 + "filler " * 40, "apple apple"]
    saturating = LexicalIndex.build([1, 2], texts, 1, Analyzer(Analysis(k1=0.01, b=1.0)))
    linear = LexicalIndex.build([1, 2], texts, 1, Analyzer(Analysis(k1=5.0, b=0.0)))
    # With b=1 the long document is penalised for its length; with b=0 and a
    # high k1 its 8 occurrences win.
    assert saturating.search("apple", 2)[0][0] == 2
    assert linear.search("apple", 2)[0][0] == 1


def test_an_index_saved_with_another_analysis_is_not_loaded(tmp_path: Path) -> None:
    index = LexicalIndex.build([1], ["running streams"], 3)
    index.save(tmp_path / "bm25")
    assert LexicalIndex.load(tmp_path / "bm25") is not None
    assert LexicalIndex.load(tmp_path / "bm25", Analyzer(Analysis("none"))) is None
    (tmp_path / "bm25" / "analysis.json").unlink()  # as saved before analyzers
    assert LexicalIndex.load(tmp_path / "bm25") is None


async def test_a_collection_keeps_its_analysis_and_old_indexes_are_rebuilt(
    datasets: Datasets,  # noqa: F811
    tiny_model: Path,
) -> None:
    made = await datasets.create("t", "fr", lexical=Analysis("french", k1=1.2, b=0.5))
    assert made.lexical == Analysis("french", 1.2, 0.5)
    await datasets.create("t", "docs")
    text = "Streaming calls are limited by max_concurrent_streams."
    for name in ("fr", "docs"):
        await datasets.upsert("t", name, [DocumentInput("d1", text=text)])
    hits = await datasets.search("t", "docs", Query("stream limits", mode=Mode.LEXICAL))
    assert [h.chunk.document_id for h in hits] == ["d1"]
    await datasets.flush()
    # The BM25 snapshot of an older gateway: no analysis recorded, unstemmed terms.
    saved = next(p for p in datasets.root.rglob("analysis.json") if "docs" in str(p))
    saved.unlink()
    await datasets.aclose()
    again = await reopen(datasets, tiny_model)
    try:
        info = await again.get("t", "fr")
        assert info.lexical == Analysis("french", 1.2, 0.5)  # kept across a restart
        hits = await again.search("t", "docs", Query("stream limits", mode=Mode.LEXICAL))
        assert [h.chunk.document_id for h in hits] == ["d1"]  # re-analysed from the store
        await again.flush()
        assert json.loads(saved.read_text())["language"] == "english"
    finally:
        await again.aclose()
        shutil.rmtree(datasets.root, ignore_errors=True)
