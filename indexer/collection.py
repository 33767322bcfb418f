"""One collection: its store, HNSW graph, BM25 index and metadata postings.

Writes (upsert, delete) commit to the store and then update the in-memory
indexes under one lock, so a search sees a document entirely or not at all.
Parsing, chunking and SQLite work run in worker threads; embedding awaits the
embedder; the event loop only coordinates.

Cancellation: an ingest cancelled before its commit leaves nothing behind;
once the commit started it completes (it is shielded) and the indexes follow.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import math
import threading
import time
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.analyzer import Analyzer
from indexer.chunker import ChunkDraft, Chunker
from indexer.documents import DocumentInput, Hit, IngestResult, Mode, Query
from indexer.embedder import Embedder
from indexer.errors import InvalidInput
from indexer.filters import MetadataIndex
from indexer.lexical import LexicalIndex
from indexer.params import IndexParams, SearchParams
from indexer.parse import parse_file, parse_text_document
from indexer.section import Section
from indexer.store import DocumentRecord, DocumentSummary, NewChunk, Store, StoredChunk
from indexer.vector_index import Hits, VectorIndex
from router import spans

log = logging.getLogger("infergate.indexer")

_EMBED_BATCH = 128
_PROGRESS_EVERY_S = 10.0  # a progress line per this long while one document embeds
GRAPH_FILE = "hnsw.bin"
LEXICAL_DIR = "bm25"
STORE_FILE = "chunks.sqlite"


def rrf(rankings: Sequence[tuple[Hits, float]], rrf_k: int) -> Hits:
    """Weighted reciprocal rank fusion: sum of weight / (rrf_k + rank) over the
    rankings a label appears in (rank from 1), best first."""
    fused: dict[int, float] = {}
    for hits, weight in rankings:
        for rank, (label, _) in enumerate(hits, start=1):
            fused[label] = fused.get(label, 0.0) + weight / (rrf_k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def score_fusion(rankings: Sequence[tuple[Hits, float]]) -> Hits:
    """Weighted sum of each ranking's scores, min-max normalised to [0, 1] over
    its own candidates (a label missing from a ranking adds 0), best first."""
    fused: dict[int, float] = {}
    for hits, weight in rankings:
        if not hits:
            continue
        scores = [score for _, score in hits]
        low, span = min(scores), max(scores) - min(scores)
        for label, score in hits:
            normal = (score - low) / span if span > 0 else 1.0
            fused[label] = fused.get(label, 0.0) + weight * normal
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


class Collection:
    def __init__(
        self,
        directory: Path,
        store: Store,
        embedder: Embedder,
        chunker: Chunker,
        index: IndexParams,
        search: SearchParams,
        analyzer: Analyzer | None = None,
    ) -> None:
        self.directory = directory
        self.analyzer = analyzer or Analyzer()
        self.store = store
        self.embedder = embedder
        self.chunker = chunker
        self.search_params = search
        self._vectors = VectorIndex(embedder.dimensions, index)
        self._metadata = MetadataIndex()
        self._lexical = LexicalIndex.build([], [], -1, self.analyzer)
        self._generation = store.generation()
        self._saved_generation = -1
        self._saved_lexical = -1
        # Searches and index updates take `_lock`; commits take `_commit` around
        # the store write and the index update so that both happen in one order.
        self._lock = threading.Lock()
        self._commit = threading.Lock()
        self._lexical_build = threading.Lock()
        self._background = threading.Lock()
        self._rebuilding: threading.Thread | None = None

    # --- loading and saving --------------------------------------------------------------

    def load(self) -> None:
        """Bring the indexes to the store's state (blocking; run in a thread):
        the snapshots when present, repaired from the store where they lag."""
        live: list[int] = []
        for chunk, _ in self.store.scan():
            live.append(chunk.label)
            self._metadata.add(chunk.label, chunk.facts())
        graph = self.directory / GRAPH_FILE
        params = self._vectors.params
        if graph.exists():
            self._vectors = VectorIndex.load(graph, self.embedder.dimensions, params, live)
        missing = self._vectors.missing(live)
        for start in range(0, len(missing), 4096):
            labels, vectors = self.store.vectors(missing[start : start + 4096])
            self._vectors.add(np.asarray(labels, dtype=np.int64), vectors)
        if missing:
            log.info("%s: %d vectors re-added from the store", self.directory, len(missing))
        # None also when saved with another analysis: rebuilt from the store when needed.
        lexical = LexicalIndex.load(self.directory / LEXICAL_DIR, self.analyzer)
        if lexical is not None:
            self._lexical = lexical
            self._saved_lexical = lexical.generation
        self._saved_generation = self._generation if not missing else -1

    def save(self) -> bool:
        """Snapshot the graph and BM25 index if they changed (blocking; write
        then rename). Returns whether anything was written."""
        self._rebuild_lexical()  # always up to date on disk, however big
        lexical = self._lexical
        wrote = False
        with self._commit:
            if self._generation != self._saved_generation:
                self._vectors.save(self.directory / GRAPH_FILE)
                self._saved_generation = self._generation
                wrote = True
        if lexical.generation != self._saved_lexical:
            lexical.save(self.directory / LEXICAL_DIR)  # it records its own generation
            self._saved_lexical = lexical.generation
            wrote = True
        return wrote

    # --- writes --------------------------------------------------------------------------

    async def upsert(self, document: DocumentInput) -> IngestResult:
        """Idempotent by document id: the same content again is a no-op; changed
        content replaces the document's chunks in one transaction."""
        if not document.id:
            raise InvalidInput("document.id", "is required")
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in document.id):
            raise InvalidInput("document.id", f"{document.id!r} holds a control character")
        digest = await asyncio.to_thread(self._digest, document)
        stored = await asyncio.to_thread(self.store.document, document.id)
        if stored is not None and stored.digest == digest:
            return IngestResult(document.id, stored.chunks, stored.pages, unchanged=True)
        source = document.source or document.filename or document.id
        chunks, pages = await self._embedded_chunks(document, source)
        record = DocumentRecord(document.id, digest, source, document.metadata, len(chunks), pages)
        await asyncio.shield(asyncio.create_task(asyncio.to_thread(self._apply, record, chunks)))
        return IngestResult(document.id, len(chunks), pages)

    async def delete_documents(self, document_ids: Sequence[str]) -> int:
        """How many of the documents existed; deleting a missing one is a no-op."""
        task = asyncio.create_task(asyncio.to_thread(self._delete, document_ids))
        return await asyncio.shield(task)

    def _digest(self, document: DocumentInput) -> str:
        digest = hashlib.sha256()
        settings = [
            document.filename, document.mime_type, document.source, dict(document.metadata),
            self.chunker.size, self.chunker.overlap, document.text is None,
        ]  # fmt: skip
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
        if document.text is not None:
            digest.update(document.text.encode())
        elif document.path is not None:
            with document.path.open("rb") as file:
                while block := file.read(1 << 20):
                    digest.update(block)
        return digest.hexdigest()

    def _sections(self, document: DocumentInput) -> Iterator[Section]:
        if document.text is not None:
            return parse_text_document(document.text, document.filename, document.mime_type)
        if document.path is None:
            raise InvalidInput("document.text", "a document needs text or a file")
        return parse_file(document.path, document.filename or document.id, document.mime_type)

    async def _embedded_chunks(
        self, document: DocumentInput, source: str
    ) -> tuple[list[NewChunk], int]:
        drafts = self.chunker.chunks(self._sections(document))
        chunks: list[NewChunk] = []
        pages = 0
        started = reported = time.monotonic()
        while batch := await asyncio.to_thread(list, itertools.islice(drafts, _EMBED_BATCH)):
            if (now := time.monotonic()) - reported >= _PROGRESS_EVERY_S:  # a long document
                reported = now
                log.info("ingesting %s into %s: %d chunks embedded in %.0fs so far",
                         document.id, self.directory, len(chunks), now - started)  # fmt: skip
            vectors = await self.embedder.embed([d.text for d in batch])
            if vectors.shape != (len(batch), self.embedder.dimensions):
                raise ValueError(f"the embedder returned {vectors.shape} for {len(batch)} texts")
            for draft, vector in zip(batch, vectors, strict=True):
                chunks.append(self._new_chunk(draft, document, source, vector))
                pages = max(pages, draft.page)
        if not chunks:
            raise InvalidInput(document.filename or "document.text", "contains no text")
        return chunks, pages

    @staticmethod
    def _new_chunk(
        draft: ChunkDraft, document: DocumentInput, source: str, vector: Any
    ) -> NewChunk:
        metadata = {**document.metadata, **(draft.extra or {})}
        return NewChunk(
            draft.position, draft.text, source, draft.page, draft.heading, metadata, vector
        )

    def _apply(self, record: DocumentRecord, chunks: list[NewChunk]) -> None:
        with self._commit:
            removed, added, previous = self.store.replace_document(record, chunks)
            vectors = np.stack([c.vector for c in chunks]).astype(np.float32)
            with self._lock:
                self._forget(removed)
                self._vectors.add(np.asarray(added, dtype=np.int64), vectors)
                for chunk in chunks:
                    stored = StoredChunk(
                        chunk.label, record.id, chunk.position, chunk.text, chunk.source,
                        chunk.page, chunk.heading, chunk.metadata,
                    )  # fmt: skip
                    self._metadata.add(chunk.label, stored.facts())
                self._advance(previous)

    def _delete(self, document_ids: Sequence[str]) -> int:
        with self._commit:
            existed, removed, previous = self.store.delete_documents(document_ids)
            with self._lock:
                self._forget(removed)
                if existed:
                    self._advance(previous)
        return existed

    def _advance(self, previous: int) -> None:
        """Our change followed `previous`: when that is the generation the
        indexes hold, they now hold the next one; otherwise another process
        wrote in between and `_follow` will catch up with both."""
        if previous == self._generation:
            self._generation = previous + 1

    def _follow(self) -> None:
        """Catch up with changes committed by other processes sharing the data
        dir (`--workers N`): one cheap generation read when there are none; a
        diff of label sets (idempotent) when there are."""
        if self.store.generation() == self._generation:
            return
        with self._commit:
            generation = self.store.generation()
            if generation == self._generation:
                return
            stored = self.store.labels()
            with self._lock:
                held = set(self._metadata.labels().tolist())
            new = sorted(stored - held)
            chunks = self.store.chunks(new)
            # A chunk deleted meanwhile is skipped; the next catch-up sees the rest.
            new, vectors = self.store.vectors([label for label in new if label in chunks])
            with self._lock:
                self._forget(sorted(held - stored))
                self._vectors.add(np.asarray(new, dtype=np.int64), vectors)
                for label in new:
                    self._metadata.add(label, chunks[label].facts())
                self._generation = generation

    def _forget(self, labels: Sequence[int]) -> None:
        self._vectors.delete(labels)
        for label in labels:
            self._metadata.remove(label)

    # --- reads ---------------------------------------------------------------------------

    async def search(self, query: Query) -> list[Hit]:
        """At most `query.k` chunks, best first; fewer when fewer match."""
        mode = query.mode
        if mode is Mode.AUTO:
            mode = Mode.HYBRID if query.text else Mode.DENSE
        if mode in (Mode.LEXICAL, Mode.HYBRID) and not query.text:
            raise InvalidInput("query.text", f"{mode} search needs query text")
        if not 1 <= query.k <= self.search_params.max_k:
            raise InvalidInput("k", f"must be in [1, {self.search_params.max_k}], got {query.k}")
        if not math.isfinite(query.min_score):
            raise InvalidInput("min_score", f"must be a finite number, got {query.min_score}")
        vector = query.vector
        if mode is not Mode.LEXICAL and vector is None:
            with spans.span("infergate.retrieval.embed"):
                vector = (await self.embedder.embed([query.text]))[0]
        if vector is not None and vector.shape != (self.embedder.dimensions,):
            raise InvalidInput(
                "query.vector",
                f"has {vector.shape[0]} dimensions, the collection {self.embedder.dimensions}",
            )
        hits = await asyncio.to_thread(self._rank, query, mode, vector)
        hits = [(label, score) for label, score in hits if score >= query.min_score]
        chunks = await asyncio.to_thread(self.store.chunks, [label for label, _ in hits])
        return [Hit(chunks[label], score) for label, score in hits if label in chunks]

    def _rank(self, query: Query, mode: Mode, vector: Any) -> Hits:
        self._follow()
        lexical = self._fresh_lexical() if mode is not Mode.DENSE else None
        params = self.search_params
        with self._lock:
            allowed = self._metadata.matching(query.conditions)
            depth = max(query.k, params.candidates) if mode is Mode.HYBRID else query.k
            dense = self._vectors.search(vector, depth, allowed) if vector is not None else []
            words = lexical.search(query.text, depth, allowed) if lexical is not None else []
        if mode is Mode.DENSE:
            return dense
        if mode is Mode.LEXICAL:
            return words
        rankings = [(dense, params.dense_weight), (words, params.lexical_weight)]
        if params.fusion == "score":
            return score_fusion(rankings)[: query.k]
        return rrf(rankings, params.rrf_k)[: query.k]

    def _fresh_lexical(self, wait: bool = True) -> LexicalIndex:
        """The BM25 index of the current generation, rebuilt from a snapshot of
        the store if it lags (writers are not held up; a rebuild is O(chunks)).
        A small collection is rebuilt before answering; a big one that has a
        previous index answers from it while a rebuild runs in the background,
        so keyword hits for the newest documents can lag by one rebuild."""
        current = self._lexical
        if current.generation == self._generation:
            return current
        big = len(self._vectors) > self.search_params.lexical_sync_limit
        if current.generation >= 0 and (big or not wait):
            self._rebuild_in_background()
            return current
        self._rebuild_lexical()
        return self._lexical

    def _rebuild_lexical(self) -> None:
        with self._lexical_build:
            if self._lexical.generation != self._generation:
                generation, labels, texts = self.store.texts()
                self._lexical = LexicalIndex.build(labels, texts, generation, self.analyzer)

    def _rebuild_in_background(self) -> None:
        with self._background:
            if self._rebuilding is None or not self._rebuilding.is_alive():
                self._rebuilding = threading.Thread(
                    target=self._rebuild_lexical, name="bm25-rebuild", daemon=True
                )
                self._rebuilding.start()

    def close(self) -> None:
        """Wait for a background rebuild, then close the store (blocking)."""
        with self._background:
            rebuilding = self._rebuilding
        if rebuilding is not None:
            rebuilding.join()
        self.store.close()

    def list_chunks(
        self, document_id: str, after: tuple[str, int], limit: int
    ) -> list[StoredChunk]:
        return self.store.document_chunks(document_id, after, limit)

    def list_documents(self, after: str, limit: int) -> list[DocumentSummary]:
        return self.store.documents(after, limit)
