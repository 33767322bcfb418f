"""Every tenant's collections under one directory, opened on first use.

Layout: `{root}/{tenant as hex}/{collection id}/` holding `chunks.sqlite` (the
truth), `hnsw.bin` and `bm25/` (snapshots). A collection belongs to the tenant
whose directory holds it, so another tenant asking for it gets `NotFound`,
exactly as for a collection that does not exist.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.analyzer import DEFAULT as DEFAULT_ANALYSIS
from indexer.analyzer import Analysis, Analyzer
from indexer.chunker import Chunker
from indexer.collection import STORE_FILE, Collection
from indexer.documents import CollectionInfo, DocumentInput, Hit, IngestResult, Query
from indexer.embedder import Embedder
from indexer.errors import AlreadyExists, InvalidInput, NotFound, NotReady
from indexer.params import Settings
from indexer.store import DocumentSummary, Store, StoredChunk
from indexer.vector_index import single_threaded_blas
from router import spans

if TYPE_CHECKING:  # the protocol only: onnxruntime loads with the model, not here
    from indexer.rerank import Reranker

_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_PARALLEL_DOCUMENTS = 8
DEFAULT_RERANK_TOP_N = 50
MAX_RERANK_TOP_N = 1000
NO_RERANKER = "no reranker is configured: set dataset.reranker (kind: onnx, model_dir)"


def check_id(collection_id: str, field: str = "collection_id") -> str:
    if not _ID.fullmatch(collection_id):
        raise InvalidInput(field, f"{collection_id!r} must match [a-z0-9][a-z0-9_-]{{0,62}}")
    return collection_id


class Datasets:
    """The Dataset layer's entry point. `embedder` None means the model is
    missing: every call then raises `NotReady(unavailable)`. `reranker` None
    means a search that asks to rerank raises `NotReady(reranker_unavailable)`.

    Safe for concurrent calls from one event loop. Deadlines are the caller's
    to enforce (cancel the call); see Collection for what cancellation leaves.
    """

    def __init__(
        self,
        root: Path,
        embedder: Embedder | None,
        embedding_model: str,
        settings: Settings | None = None,
        unavailable: str = "no embedding model is configured",
        *,
        reranker: Reranker | None = None,
        reranker_unavailable: str = NO_RERANKER,
    ) -> None:
        self.root = root
        self.embedder = embedder
        self.reranker = reranker
        self.reranker_unavailable = reranker_unavailable
        self.embedding_model = embedding_model
        self.settings = settings or Settings()
        self.unavailable = unavailable
        self._open: dict[tuple[str, str], Collection] = {}
        self._opening: dict[tuple[str, str], asyncio.Future[Collection]] = {}
        single_threaded_blas()

    def _ready(self) -> Embedder:
        if self.embedder is None:
            raise NotReady(self.unavailable)
        return self.embedder

    def _directory(self, tenant: str, collection_id: str) -> Path:
        return self.root / tenant.encode().hex() / check_id(collection_id, "collection")

    # --- collections ---------------------------------------------------------------------

    async def create(
        self,
        tenant: str,
        collection_id: str,
        display_name: str = "",
        chunk_tokens: int = 0,
        chunk_overlap: int = -1,
        lexical: Analysis = DEFAULT_ANALYSIS,
    ) -> CollectionInfo:
        """Not idempotent: a second create of the same id raises AlreadyExists."""
        embedder = self._ready()
        directory = self.root / tenant.encode().hex() / check_id(collection_id)
        defaults = self.settings.chunk
        tokens = chunk_tokens or defaults.tokens
        if tokens < 16:
            raise InvalidInput("collection.chunk_tokens", f"must be >= 16, got {tokens}")
        chunker = Chunker(embedder.tokenizer, embedder.max_tokens, tokens, defaults.overlap)
        if chunk_overlap >= 0:  # asked for explicitly: refuse rather than clamp
            if chunk_overlap > chunker.size // 2:
                raise InvalidInput(
                    "collection.chunk_overlap",
                    f"must be at most half the chunk size {chunker.size}, got {chunk_overlap}",
                )
            chunker = Chunker(embedder.tokenizer, embedder.max_tokens, tokens, chunk_overlap)
        info = {
            "tenant": tenant, "id": collection_id, "display_name": display_name or collection_id,
            "embedding_model": self.embedding_model, "dimensions": embedder.dimensions,
            "chunk_tokens": chunker.size, "chunk_overlap": chunker.overlap,
            "create_time": time.time(), "generation": 0, "lexical": asdict(lexical),
        }  # fmt: skip
        await asyncio.to_thread(self._make, directory, info)
        return await self.get(tenant, collection_id)

    @staticmethod
    def _make(directory: Path, info: dict[str, object]) -> None:
        if directory.exists():
            raise AlreadyExists(f"collection {info['id']!r} already exists")
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = directory.with_name(f".{directory.name}.creating-{secrets.token_hex(4)}")
        staging.mkdir()
        store = Store(staging / STORE_FILE)
        try:
            store.set_info(info)
        finally:
            store.close()
        try:
            os.rename(staging, directory)  # atomic; fails if another create won
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise AlreadyExists(f"collection {info['id']!r} already exists") from exc

    async def get(self, tenant: str, collection_id: str) -> CollectionInfo:
        collection = await self.collection(tenant, collection_id)
        return await asyncio.to_thread(_info, collection.store)

    async def list_collections(
        self, tenant: str, page_size: int = 100, page_token: str = ""
    ) -> tuple[list[CollectionInfo], str]:
        """Collections by id, after `page_token` (the last id of the previous page)."""
        self._ready()
        page_size = min(max(page_size, 1), 1000) if page_size else 100
        tenant_dir = self.root / tenant.encode().hex()
        ids = sorted(
            p.name
            for p in (tenant_dir.iterdir() if tenant_dir.is_dir() else ())
            if _ID.fullmatch(p.name) and p.name > page_token
        )
        page = ids[:page_size]
        infos = [await self._peek(tenant, i) for i in page]
        return infos, (page[-1] if len(ids) > page_size else "")

    async def _peek(self, tenant: str, collection_id: str) -> CollectionInfo:
        """A collection's info without loading its indexes."""
        if (collection := self._open.get((tenant, collection_id))) is not None:
            return await asyncio.to_thread(_info, collection.store)
        path = self._directory(tenant, collection_id) / STORE_FILE

        def read() -> CollectionInfo:
            store = Store(path)
            try:
                return _info(store)
            finally:
                store.close()

        return await asyncio.to_thread(read)

    async def delete(self, tenant: str, collection_id: str) -> None:
        """Not idempotent: deleting a missing collection raises NotFound."""
        self._ready()
        directory = self._directory(tenant, collection_id)
        key = (tenant, collection_id)
        collection = self._open.pop(key, None)
        if collection is not None:
            await asyncio.to_thread(collection.close)
        if not directory.is_dir():
            raise NotFound(f"collection {collection_id!r} not found")
        doomed = directory.with_name(f".{collection_id}.deleting-{secrets.token_hex(4)}")
        await asyncio.to_thread(os.rename, directory, doomed)
        await asyncio.to_thread(shutil.rmtree, doomed, True)

    async def collection(self, tenant: str, collection_id: str) -> Collection:
        """The open collection, loading it on first use (concurrent callers share one load)."""
        embedder = self._ready()
        key = (tenant, collection_id)
        if (collection := self._open.get(key)) is not None:
            return collection
        if (pending := self._opening.get(key)) is not None:
            return await asyncio.shield(pending)
        directory = self._directory(tenant, collection_id)
        future: asyncio.Future[Collection] = asyncio.get_running_loop().create_future()
        self._opening[key] = future
        try:
            collection = await asyncio.to_thread(self._load, directory, embedder)
            self._open[key] = collection
            future.set_result(collection)
            return collection
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unshared failure is not "never retrieved"
            raise
        finally:
            del self._opening[key]

    def _load(self, directory: Path, embedder: Embedder) -> Collection:
        path = directory / STORE_FILE
        if not path.is_file():
            raise NotFound(f"collection {directory.name!r} not found")
        store = Store(path)
        info = store.info()
        if (
            info["dimensions"] != embedder.dimensions
            or info["embedding_model"] != self.embedding_model
        ):
            store.close()
            raise NotReady(
                f"collection {directory.name!r} was embedded with {info['embedding_model']!r} "
                f"({info['dimensions']} dimensions); this gateway embeds with "
                f"{self.embedding_model!r} ({embedder.dimensions})"
            )
        chunker = Chunker(
            embedder.tokenizer, embedder.max_tokens, info["chunk_tokens"], info["chunk_overlap"]
        )
        collection = Collection(
            directory, store, embedder, chunker, self.settings.index, self.settings.search,
            Analyzer(_analysis(info)),
        )  # fmt: skip
        collection.load()
        return collection

    # --- documents and search ------------------------------------------------------------

    async def upsert(
        self, tenant: str, collection_id: str, documents: Sequence[DocumentInput]
    ) -> list[IngestResult]:
        """Each document all or nothing; idempotent by document id. Documents are
        ingested a few at a time so that their embeddings share model calls; if
        one fails, those not yet committing are cancelled and the error raised."""
        seen: set[str] = set()
        for i, document in enumerate(documents):
            if document.id in seen:
                raise InvalidInput(f"documents[{i}].id", f"{document.id!r} appears twice")
            seen.add(document.id)
        collection = await self.collection(tenant, collection_id)
        gate = asyncio.Semaphore(_PARALLEL_DOCUMENTS)

        async def one(document: DocumentInput) -> IngestResult:
            async with gate:
                return await collection.upsert(document)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(d)) for d in documents]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the first failure, as if sequential
        return [t.result() for t in tasks]

    async def delete_documents(
        self, tenant: str, collection_id: str, document_ids: Sequence[str]
    ) -> int:
        collection = await self.collection(tenant, collection_id)
        return await collection.delete_documents(document_ids)

    async def search(self, tenant: str, collection_id: str, query: Query) -> list[Hit]:
        """At most `query.k` hits, best first (by rerank score when `query.rerank`).
        Idempotent; cancelling the caller abandons the search, rerank included."""
        reranker = self._reranker(query)
        collection = await self.collection(tenant, collection_id)
        if not spans.ON:
            return await self._search(collection, query, reranker)
        attributes = {"infergate.collection": collection_id, "infergate.mode": str(query.mode)}
        with spans.span("infergate.retrieval.search", attributes) as span:
            hits = await self._search(collection, query, reranker)
            span.set_attribute("infergate.hits", len(hits))
            return hits

    def _reranker(self, query: Query) -> Reranker | None:
        """The reranker `query` asks for (None: no rerank), once its rerank
        fields are valid."""
        max_k = self.settings.search.max_k
        if query.rerank and not 1 <= query.k <= max_k:  # the stage widens k: check it here
            raise InvalidInput("k", f"must be in [1, {max_k}], got {query.k}")
        if not 0 <= query.rerank_top_n <= MAX_RERANK_TOP_N:
            raise InvalidInput(
                "rerank_top_n", f"must be in [0, {MAX_RERANK_TOP_N}], got {query.rerank_top_n}"
            )
        if not query.rerank:
            return None
        if not query.text.strip():
            raise InvalidInput("rerank", "needs query text: a vector alone cannot be reranked")
        if self.reranker is None:
            raise NotReady(self.reranker_unavailable)
        return self.reranker

    async def _search(
        self, collection: Collection, query: Query, reranker: Reranker | None
    ) -> list[Hit]:
        if reranker is None:
            return await collection.search(query)
        top_n = min(query.rerank_top_n or DEFAULT_RERANK_TOP_N, self.settings.search.max_k)
        candidates = await collection.search(replace(query, k=max(query.k, top_n)))
        attributes: dict[str, str | int] = {
            "infergate.candidates": len(candidates), "infergate.model": reranker.model,
        }  # fmt: skip
        with spans.span("infergate.retrieval.rerank", attributes):
            scores = await reranker.score(query.text, [hit.chunk.text for hit in candidates])
        if len(scores) != len(candidates):
            raise ValueError(f"the reranker gave {len(scores)} scores for {len(candidates)} texts")
        # sorted() is stable: equal rerank scores keep the retrieval order.
        order = sorted(range(len(candidates)), key=lambda i: -scores[i])
        return [replace(candidates[i], rerank_score=scores[i]) for i in order[: query.k]]

    async def list_chunks(
        self, tenant: str, collection_id: str, document_id: str, after: tuple[str, int], limit: int
    ) -> list[StoredChunk]:
        collection = await self.collection(tenant, collection_id)
        return await asyncio.to_thread(collection.list_chunks, document_id, after, limit)

    async def list_documents(
        self, tenant: str, collection_id: str, after: str, limit: int
    ) -> list[DocumentSummary]:
        """Up to `limit` of the collection's documents by id, after the id `after`."""
        collection = await self.collection(tenant, collection_id)
        return await asyncio.to_thread(collection.list_documents, after, limit)

    # --- lifecycle -----------------------------------------------------------------------

    async def flush(self) -> int:
        """Snapshot every open collection that changed; returns how many did."""
        saved = 0
        for collection in list(self._open.values()):
            saved += await asyncio.to_thread(collection.save)
        return saved

    async def aclose(self) -> None:
        """Snapshot and close every collection, then the embedder and reranker."""
        await self.flush()
        for collection in self._open.values():
            await asyncio.to_thread(collection.close)
        self._open.clear()
        if self.embedder is not None:
            await self.embedder.aclose()
        if self.reranker is not None:
            await self.reranker.aclose()


def _info(store: Store) -> CollectionInfo:
    info = store.info()
    documents, chunks = store.counts()
    return CollectionInfo(
        info["tenant"], info["id"], info["display_name"], info["embedding_model"],
        info["dimensions"], info["chunk_tokens"], info["chunk_overlap"], info["create_time"],
        documents, chunks, _analysis(info),
    )  # fmt: skip


def _analysis(info: dict[str, Any]) -> Analysis:
    """A collection's analysis; one made before analyzers gets the default
    (its saved BM25 index, built without one, is rebuilt on first use)."""
    return Analysis(**info.get("lexical", {}))


async def ingest_document(
    datasets: Datasets, tenant: str, collection_id: str, document: DocumentInput
) -> IngestResult:
    """Ingest one document: the plain function a task handler (`dataset.ingest`)
    calls. Idempotent by document id, all or nothing; safe to retry."""
    return (await datasets.upsert(tenant, collection_id, [document]))[0]
