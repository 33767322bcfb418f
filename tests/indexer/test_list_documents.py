"""Listing a collection's documents: by id, paged, tenant-scoped, from the store's
primary-key index (no scan of the documents or chunks)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from indexer.collection import STORE_FILE
from indexer.datasets import Datasets
from indexer.documents import DocumentInput
from indexer.errors import NotFound
from indexer.hashed_embedder import HashedEmbedder
from indexer.store import Store
from tests.indexer.test_collection import PAGES
from tests.indexer.test_parse import write_pdf


@pytest.fixture
async def datasets(tmp_path: Path) -> AsyncIterator[Datasets]:
    datasets = Datasets(tmp_path / "datasets", HashedEmbedder(dimensions=32), "hashed")
    yield datasets
    await datasets.aclose()


async def all_ids(datasets: Datasets, tenant: str, page: int) -> list[list[str]]:
    """Every page of ids, walking the `after` cursor as the service does."""
    pages: list[list[str]] = []
    after = ""
    while True:
        listed = await datasets.list_documents(tenant, "docs", after, page + 1)
        pages.append([d.id for d in listed[:page]])
        if len(listed) <= page:
            return pages
        after = listed[page - 1].id


async def test_documents_are_listed_by_id_with_their_details(
    datasets: Datasets, tmp_path: Path
) -> None:
    await datasets.create("t", "docs")
    pdf = write_pdf(tmp_path / "report.pdf", PAGES)
    before = time.time()
    results = await datasets.upsert(
        "t",
        "docs",
        [
            DocumentInput("b-note", text="snow and rain", metadata={"year": 2019}),
            DocumentInput("a-report", path=pdf, filename="report.pdf", metadata={"team": "ops"}),
            DocumentInput("c-web", text="cats chase mice", source="https://example.com/c"),
        ],
    )
    listed = await datasets.list_documents("t", "docs", "", 10)
    assert [(d.id, d.source, d.chunks, d.pages, dict(d.metadata)) for d in listed] == [
        ("a-report", "report.pdf", results[1].chunks, 4, {"team": "ops"}),
        ("b-note", "b-note", 1, 0, {"year": 2019}),
        ("c-web", "https://example.com/c", 1, 0, {}),
    ]
    assert results[1].chunks >= 4  # a chunk never spans two pages
    assert all(before <= d.update_time <= time.time() for d in listed)
    info = await datasets.get("t", "docs")
    assert sum(d.chunks for d in listed) == info.chunks and len(listed) == info.documents


async def test_pages_follow_the_id_cursor_and_see_changes(datasets: Datasets) -> None:
    await datasets.create("t", "docs")
    ids = [f"doc-{i:02d}" for i in range(7)]
    await datasets.upsert("t", "docs", [DocumentInput(i, text=f"text of {i}") for i in ids])
    assert await all_ids(datasets, "t", 3) == [ids[0:3], ids[3:6], ids[6:7]]
    assert await all_ids(datasets, "t", 7) == [ids]
    assert [d.id for d in await datasets.list_documents("t", "docs", "doc-04", 100)] == ids[5:]
    # A cursor naming a deleted document still works: the page starts after it.
    await datasets.delete_documents("t", "docs", ["doc-04", "doc-05"])
    assert [d.id for d in await datasets.list_documents("t", "docs", "doc-04", 100)] == ["doc-06"]


async def test_an_unchanged_upsert_keeps_the_update_time_a_change_moves_it(
    datasets: Datasets,
) -> None:
    await datasets.create("t", "docs")
    await datasets.upsert("t", "docs", [DocumentInput("a", text="first words")])
    (first,) = await datasets.list_documents("t", "docs", "", 10)
    await asyncio.sleep(0.01)
    await datasets.upsert("t", "docs", [DocumentInput("a", text="first words")])
    (same,) = await datasets.list_documents("t", "docs", "", 10)
    assert same.update_time == first.update_time
    await datasets.upsert("t", "docs", [DocumentInput("a", text="first words. " * 80)])
    (changed,) = await datasets.list_documents("t", "docs", "", 10)
    assert changed.update_time > first.update_time and changed.chunks > 1


async def test_another_tenants_documents_are_not_found(datasets: Datasets) -> None:
    await datasets.create("alice", "docs")
    await datasets.upsert("alice", "docs", [DocumentInput("secret", text="alice's plans")])
    with pytest.raises(NotFound):
        await datasets.list_documents("bob", "docs", "", 10)
    await datasets.create("bob", "docs")
    assert await datasets.list_documents("bob", "docs", "", 10) == []
    assert [d.id for d in await datasets.list_documents("alice", "docs", "", 10)] == ["secret"]


def test_a_page_is_one_range_read_on_the_primary_key(tmp_path: Path) -> None:
    store = Store(tmp_path / STORE_FILE)
    try:
        statements: list[str] = []
        store._read.set_trace_callback(statements.append)  # the SQL it really runs
        store.documents("doc-1", 10)
        (query,) = [s for s in statements if "FROM documents" in s]
        with sqlite3.connect(store.path) as connection:
            plan = connection.execute(f"EXPLAIN QUERY PLAN {query}").fetchall()
        details = " | ".join(str(row[-1]) for row in plan)
        assert "USING INDEX sqlite_autoindex_documents_1 (id>?)" in details, details
        assert "SCAN" not in details and "TEMP B-TREE" not in details, details
    finally:
        store.close()
