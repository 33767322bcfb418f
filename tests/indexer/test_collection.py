"""The Dataset layer end to end (parse -> chunk -> embed -> index -> search) with
the tiny ONNX model the project builds (indexer.testmodel) and real files."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from tokenizers import Tokenizer

from indexer.datasets import Datasets, ingest_document
from indexer.documents import DocumentInput, Mode, Query
from indexer.errors import AlreadyExists, InvalidInput, NotFound, NotReady, UnreadableFile
from indexer.filters import Eq, In, Range
from indexer.hashed_embedder import HashedEmbedder
from indexer.onnx_embedder import OnnxEmbedder
from indexer.params import SearchParams, Settings
from tests.indexer.test_parse import write_pdf

PAGES = [
    "Cats chase mice in the garden. The cat sleeps on the chair in the kitchen.",
    "Pizza with cheese and bread is good food. We eat pasta and rice with soup.",
    "Rain and snow in winter. The storm brings wind and cold weather to the city.",
    "The piano and the guitar play music. We sing songs and watch a movie.",
]


@pytest.fixture
async def datasets(tmp_path: Path, tiny_model: Path) -> AsyncIterator[Datasets]:
    datasets = Datasets(tmp_path / "datasets", OnnxEmbedder(tiny_model), "tiny")
    yield datasets
    await datasets.aclose()


async def reopen(datasets: Datasets, tiny_model: Path) -> Datasets:
    return Datasets(datasets.root, OnnxEmbedder(tiny_model), "tiny")


async def top(datasets: Datasets, text: str, **query: object) -> list[tuple[str, int, str]]:
    hits = await datasets.search("t", "docs", Query(text, **query))  # type: ignore[arg-type]
    return [(h.chunk.document_id, h.chunk.page, h.chunk.text) for h in hits]


async def test_pdf_round_trip_finds_the_right_page(datasets: Datasets, tmp_path: Path) -> None:
    await datasets.create("t", "docs")
    pdf = write_pdf(tmp_path / "report.pdf", PAGES)
    result = await ingest_document(
        datasets, "t", "docs", DocumentInput("report", path=pdf, filename="report.pdf")
    )
    assert (result.chunks, result.pages) == (4, 4)
    for mode in Mode:
        (document, page, text), *_ = await top(datasets, "snow and rain in winter", mode=mode)
        assert (document, page) == ("report", 3), mode
        assert text.startswith("Rain and snow")
    info = await datasets.get("t", "docs")
    assert (info.documents, info.chunks, info.dimensions) == (1, 4, 64)


async def test_csv_markdown_and_html(datasets: Datasets, tmp_path: Path) -> None:
    await datasets.create("t", "docs", chunk_tokens=40)
    csv = tmp_path / "menu.csv"
    csv.write_text("food,price\npizza with cheese,12\napple and banana,3\ncoffee or tea,2\n")
    markdown = tmp_path / "pets.md"
    markdown.write_text("# Pets\n\n## Cats\n\nCats chase mice.\n\n## Dogs\n\nDogs bark at birds.\n")
    html = tmp_path / "weather.html"
    html.write_text("<html><script>pizza pizza</script><body><p>Snow and rain.</p></body></html>")
    for path in (csv, markdown, html):
        await datasets.upsert(
            "t", "docs", [DocumentInput(path.stem, path=path, filename=path.name)]
        )
    hits = await datasets.search("t", "docs", Query("banana", mode=Mode.LEXICAL, k=1))
    assert hits[0].chunk.text == "food: apple and banana\nprice: 3"
    assert hits[0].chunk.metadata == {"row": 2}
    hits = await datasets.search("t", "docs", Query("dogs bark", k=1))
    assert hits[0].chunk.heading == "Pets > Dogs"
    hits = await datasets.search("t", "docs", Query("pizza", mode=Mode.LEXICAL))
    assert {h.chunk.document_id for h in hits} == {"menu"}  # not the script


async def test_filters_and_fewer_than_k(datasets: Datasets) -> None:
    await datasets.create("t", "docs")
    documents = [
        DocumentInput(f"d{i}", text=text, metadata={"year": 2020 + i, "lang": lang, "tags": tags})
        for i, (text, lang, tags) in enumerate(
            [
                ("cats chase mice", "en", ["pets"]),
                ("dogs chase cats", "fr", ["pets", "loud"]),
                ("the cat and the dog eat food", "en", []),
                ("snow in winter", "de", ["weather"]),
            ]
        )
    ]
    await datasets.upsert("t", "docs", documents)

    async def ids(*conditions: object, k: int = 10) -> list[str]:
        query = Query("cats", k=k, conditions=conditions)  # type: ignore[arg-type]
        return sorted(h.chunk.document_id for h in await datasets.search("t", "docs", query))

    assert await ids(Eq("lang", "en")) == ["d0", "d2"]
    assert await ids(In("lang", ("fr", "de"))) == ["d1", "d3"]
    assert await ids(Range("year", gte=2021, lt=2023)) == ["d1", "d2"]
    assert await ids(Eq("tags", "pets"), Eq("lang", "fr")) == ["d1"]
    assert await ids(Eq("document_id", "d3")) == ["d3"]
    assert await ids(Eq("lang", "xx")) == []
    assert len(await ids(k=2)) == 2
    hits = await datasets.search("t", "docs", Query("cats chase", mode=Mode.DENSE, min_score=0.5))
    assert hits and all(h.score >= 0.5 for h in hits)


async def test_upsert_is_idempotent_and_a_change_replaces_chunks(
    datasets: Datasets, tiny_model: Path
) -> None:
    await datasets.create("t", "docs", chunk_tokens=16, chunk_overlap=0)
    embedder = datasets.embedder
    assert isinstance(embedder, OnnxEmbedder)
    long_text = " ".join(["cats chase mice in the garden."] * 6)
    first = (await datasets.upsert("t", "docs", [DocumentInput("a", text=long_text)]))[0]
    calls = embedder.inference_calls
    again = (await datasets.upsert("t", "docs", [DocumentInput("a", text=long_text)]))[0]
    assert again.unchanged and again.chunks == first.chunks > 1
    assert embedder.inference_calls == calls  # nothing re-embedded
    await datasets.upsert("t", "docs", [DocumentInput("a", text="snow in winter")])
    chunks = await datasets.list_chunks("t", "docs", "a", ("", -1), 100)
    assert [c.text for c in chunks] == ["snow in winter"]
    assert await top(datasets, "cats chase mice", mode=Mode.LEXICAL) == []
    assert (await datasets.get("t", "docs")).chunks == 1


async def test_delete_and_reinsert(datasets: Datasets) -> None:
    await datasets.create("t", "docs")
    await datasets.upsert("t", "docs", [DocumentInput("a", text="cats chase mice")])
    await datasets.upsert("t", "docs", [DocumentInput("b", text="rain and snow")])
    assert await datasets.delete_documents("t", "docs", ["a", "missing"]) == 1
    assert [d for d, _, _ in await top(datasets, "cats chase mice")] == ["b"]
    await datasets.upsert("t", "docs", [DocumentInput("a", text="cats chase mice")])
    assert [d for d, _, _ in await top(datasets, "cats chase mice", k=1)] == ["a"]
    assert (await datasets.get("t", "docs")).documents == 2


async def test_persistence_across_restart_and_after_a_crash(
    datasets: Datasets, tiny_model: Path
) -> None:
    await datasets.create("t", "docs")
    await datasets.upsert("t", "docs", [DocumentInput("a", text="cats chase mice")])
    assert await datasets.flush() == 1
    # Committed after the last snapshot, and the process "dies" without saving.
    await datasets.upsert("t", "docs", [DocumentInput("b", text="rain and snow in winter")])
    await datasets.delete_documents("t", "docs", ["a"])
    survivor = await reopen(datasets, tiny_model)
    try:
        assert [d for d, _, _ in await top(survivor, "rain snow", mode=Mode.DENSE)] == ["b"]
        assert [d for d, _, _ in await top(survivor, "winter", mode=Mode.LEXICAL)] == ["b"]
        collection = await survivor.collection("t", "docs")
        assert collection._vectors._graph.ef == survivor.settings.index.ef
    finally:
        await survivor.aclose()
    # Without any snapshot at all, the store alone rebuilds the indexes.
    await datasets.aclose()
    for path in datasets.root.rglob("hnsw.bin"):
        path.unlink()
    rebuilt = await reopen(datasets, tiny_model)
    try:
        assert [d for d, _, _ in await top(rebuilt, "rain snow", mode=Mode.DENSE)] == ["b"]
    finally:
        await rebuilt.aclose()


class FailingEmbedder:
    """The tiny model's embedder, failing every call after `budget` calls."""

    def __init__(self, inner: OnnxEmbedder, budget: int) -> None:
        self.inner = inner
        self.budget = budget

    dimensions = property(lambda self: self.inner.dimensions)
    max_tokens = property(lambda self: self.inner.max_tokens)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.inner.tokenizer

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.budget -= 1
        if self.budget < 0:
            raise RuntimeError("the model crashed")
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_ingest_is_all_or_nothing(tmp_path: Path, tiny_model: Path) -> None:
    embedder = FailingEmbedder(OnnxEmbedder(tiny_model), budget=1)
    datasets = Datasets(tmp_path, embedder, "tiny")  # type: ignore[arg-type]
    try:
        await datasets.create("t", "docs", chunk_tokens=16, chunk_overlap=0)
        await datasets.upsert("t", "docs", [DocumentInput("a", text="cats chase mice")])
        big = "\n\n".join(f"snow number {i} in winter." for i in range(400))  # > 128 chunks
        with pytest.raises(RuntimeError, match="crashed"):
            await datasets.upsert("t", "docs", [DocumentInput("a", text=big)])
        broken = tmp_path / "broken.pdf"
        broken.write_bytes(b"%PDF-1.7 truncated")
        with pytest.raises(UnreadableFile, match=r"broken\.pdf"):
            await datasets.upsert(
                "t", "docs", [DocumentInput("a", path=broken, filename="broken.pdf")]
            )
        chunks = await datasets.list_chunks("t", "docs", "", ("", -1), 100)
        assert [(c.document_id, c.text) for c in chunks] == [("a", "cats chase mice")]
    finally:
        await datasets.aclose()


async def test_searches_run_while_documents_are_ingested(datasets: Datasets) -> None:
    await datasets.create("t", "docs", chunk_tokens=16, chunk_overlap=0)
    texts = {f"doc{i}": " ".join([f"cats chase mice {i}."] * 5) for i in range(30)}
    done: set[str] = set()

    async def ingest() -> None:
        for document_id, text in texts.items():
            await datasets.upsert("t", "docs", [DocumentInput(document_id, text=text)])
            done.add(document_id)

    writer = asyncio.create_task(ingest())
    searches = 0
    while not writer.done():
        finished_before = set(done)
        hits = await datasets.search("t", "docs", Query("cats chase mice", k=50))
        found = {h.chunk.document_id for h in hits}
        # Never a document that was not at least being ingested; every finished one is whole.
        assert found <= set(texts)
        assert finished_before <= found or len(hits) == 50
        searches += 1
    await writer
    assert searches > 3
    assert (await datasets.get("t", "docs")).documents == 30


async def test_collections_belong_to_their_tenant(datasets: Datasets) -> None:
    await datasets.create("alice", "docs")
    await datasets.upsert("alice", "docs", [DocumentInput("a", text="cats chase mice")])
    for call in (
        datasets.get("bob", "docs"),
        datasets.search("bob", "docs", Query("cats")),
        datasets.upsert("bob", "docs", [DocumentInput("x", text="dogs")]),
        datasets.delete_documents("bob", "docs", ["a"]),
        datasets.delete("bob", "docs"),
    ):
        with pytest.raises(NotFound):
            await call
    await datasets.create("bob", "docs")  # the same id is free in another tenant
    assert await datasets.search("bob", "docs", Query("cats")) == []
    assert [c.id for c in (await datasets.list_collections("alice"))[0]] == ["docs"]
    await datasets.delete("alice", "docs")
    assert (await datasets.list_collections("alice"))[0] == []
    assert [c.id for c in (await datasets.list_collections("bob"))[0]] == ["docs"]


async def test_bad_requests_are_named(datasets: Datasets) -> None:
    with pytest.raises(InvalidInput, match="collection_id: 'Bad/Id' must match"):
        await datasets.create("t", "Bad/Id")
    await datasets.create("t", "docs")
    with pytest.raises(AlreadyExists):
        await datasets.create("t", "docs")
    with pytest.raises(InvalidInput, match="chunk_overlap: must be at most half"):
        await datasets.create("t", "other", chunk_tokens=32, chunk_overlap=20)
    vector = np.ones(3, dtype=np.float32)
    with pytest.raises(InvalidInput, match=r"query\.vector: has 3 dimensions, the collection 64"):
        await datasets.search("t", "docs", Query(vector=vector))
    with pytest.raises(InvalidInput, match=r"query\.text: lexical search needs query text"):
        await datasets.search("t", "docs", Query(vector=vector, mode=Mode.LEXICAL))
    with pytest.raises(InvalidInput, match=r"k: must be in \[1, 1000\], got 0"):
        await datasets.search("t", "docs", Query("cats", k=0))
    with pytest.raises(InvalidInput, match=r"document\.text: contains no text"):
        await datasets.upsert("t", "docs", [DocumentInput("a", text="   ")])
    twice = [DocumentInput("a", text="cats"), DocumentInput("a", text="dogs")]
    with pytest.raises(InvalidInput, match=r"documents\[1\]\.id: 'a' appears twice"):
        await datasets.upsert("t", "docs", twice)
    with pytest.raises(NotFound):
        await datasets.search("t", "nope", Query("cats"))
    for score in (float("nan"), float("inf")):
        with pytest.raises(InvalidInput, match=r"min_score: must be a finite number"):
            await datasets.search("t", "docs", Query("cats", min_score=score))
    for bad_id in ("a\x00b", "tab\there", "line\n"):
        with pytest.raises(InvalidInput, match=r"document\.id: .* holds a control character"):
            await datasets.upsert("t", "docs", [DocumentInput(bad_id, text="cats")])
    for fine in ("é ok-1", "Screenshot 10.41\u202fAM.png", "soft\u00adhyphen"):
        assert await datasets.upsert("t", "docs", [DocumentInput(fine, text="cats")])


async def test_without_a_model_every_call_says_what_to_run(tmp_path: Path) -> None:
    datasets = Datasets(tmp_path, None, "", unavailable="run `infergate model fetch`")
    with pytest.raises(NotReady, match="infergate model fetch"):
        await datasets.create("t", "docs")
    with pytest.raises(NotReady, match="infergate model fetch"):
        await datasets.list_collections("t")


async def test_a_collection_embedded_by_another_model_is_refused(tmp_path: Path) -> None:
    first = Datasets(tmp_path, HashedEmbedder(dimensions=64), "hashed")
    await first.create("t", "docs")
    await first.aclose()
    second = Datasets(tmp_path, HashedEmbedder(dimensions=32), "other")
    with pytest.raises(NotReady, match="was embedded with 'hashed'"):
        await second.get("t", "docs")


async def test_processes_sharing_a_data_dir_see_each_others_writes(
    datasets: Datasets, tiny_model: Path
) -> None:
    """`--workers N`: every process has its own indexes over the one store."""
    await datasets.create("t", "docs")
    other = await reopen(datasets, tiny_model)
    try:
        assert await top(other, "cats") == []  # opened, and its indexes loaded, while empty
        await datasets.upsert("t", "docs", [DocumentInput("a", text="cats chase mice")])
        await datasets.upsert("t", "docs", [DocumentInput("b", text="rain and snow")])
        assert [d for d, _, _ in await top(other, "cats chase mice", k=1)] == ["a"]
        await other.delete_documents("t", "docs", ["a"])
        await other.upsert("t", "docs", [DocumentInput("c", text="pizza with cheese")])
        assert {d for d, _, _ in await top(datasets, "cats pizza snow")} == {"b", "c"}
        assert [d for d, _, _ in await top(datasets, "pizza", mode=Mode.LEXICAL)] == ["c"]
    finally:
        await other.aclose()


async def test_a_big_collection_answers_from_the_previous_bm25_while_rebuilding(
    tmp_path: Path, tiny_model: Path
) -> None:
    settings = Settings(search=SearchParams(lexical_sync_limit=0))  # every collection is big
    datasets = Datasets(tmp_path, OnnxEmbedder(tiny_model), "tiny", settings)
    try:
        await datasets.create("t", "docs")
        await datasets.upsert("t", "docs", [DocumentInput("a", text="cats chase mice")])
        assert [d for d, _, _ in await top(datasets, "cats", mode=Mode.LEXICAL)] == ["a"]
        await datasets.upsert("t", "docs", [DocumentInput("b", text="cats and pizza")])
        found: list[str] = []
        for _ in range(100):  # the rebuild started by the first search lands shortly
            found = [d for d, _, _ in await top(datasets, "pizza", mode=Mode.LEXICAL)]
            if found:
                break
            await asyncio.sleep(0.05)
        assert found == ["b"]
        await datasets.upsert("t", "docs", [DocumentInput("c", text="pizza again")])
        await top(datasets, "pizza", mode=Mode.LEXICAL)  # starts a rebuild; close waits for it
    finally:
        await datasets.aclose()


async def test_a_long_ingest_logs_its_progress(
    datasets: Datasets, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("indexer.collection._PROGRESS_EVERY_S", 0.0)  # a line per batch
    await datasets.create("t", "long", chunk_tokens=16, chunk_overlap=0)
    text = " ".join(f"Sentence number {i} is about cats." for i in range(300))
    with caplog.at_level(logging.INFO, logger="infergate.indexer"):
        [result] = await datasets.upsert("t", "long", [DocumentInput("book", text=text)])
    assert result.chunks > 128  # more than one embedding batch
    progress = [r.getMessage() for r in caplog.records if "chunks embedded" in r.getMessage()]
    assert any("ingesting book into " in m and ": 128 chunks embedded in" in m for m in progress)
