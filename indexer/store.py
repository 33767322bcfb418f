"""A collection's durable state in one SQLite file: its settings, its documents
and every chunk's text, metadata and vector.

This file is the source of truth. The HNSW graph and the BM25 index are
snapshots derived from it and are repaired from it on load, so a crash at any
point loses nothing that was committed and shows nothing that was not: a
document's chunks are replaced in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

_SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY, digest TEXT NOT NULL, source TEXT NOT NULL,
    metadata TEXT NOT NULL, chunks INTEGER NOT NULL, pages INTEGER NOT NULL,
    update_time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    label INTEGER PRIMARY KEY, document_id TEXT NOT NULL, position INTEGER NOT NULL,
    text TEXT NOT NULL, source TEXT NOT NULL, page INTEGER NOT NULL, heading TEXT NOT NULL,
    metadata TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks (document_id, position);
"""


@dataclass(frozen=True, slots=True)
class StoredChunk:
    label: int
    document_id: str
    position: int
    text: str
    source: str
    page: int
    heading: str
    metadata: Mapping[str, Any]  # the document's metadata plus the parser's (e.g. row)

    def facts(self) -> dict[str, Any]:
        """What filters see: the metadata, then the chunk's own fields (which win)."""
        own: dict[str, Any] = {"document_id": self.document_id, "source": self.source}
        if self.page:
            own["page"] = self.page
        if self.heading:
            own["heading"] = self.heading
        return {**self.metadata, **own}


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    id: str
    digest: str
    source: str
    metadata: Mapping[str, Any]
    chunks: int
    pages: int


@dataclass(frozen=True, slots=True)
class DocumentSummary:
    """A stored document as listed: what it is, not its text or digest."""

    id: str
    source: str
    metadata: Mapping[str, Any]
    chunks: int
    pages: int
    update_time: float  # seconds since the epoch of its last changed content


@dataclass(slots=True)
class NewChunk:
    """A chunk to store; its label is assigned by `Store.replace_document`."""

    position: int
    text: str
    source: str
    page: int
    heading: str
    metadata: Mapping[str, Any]
    vector: npt.NDArray[np.float32]
    label: int = field(default=-1)


def _chunk(row: Sequence[Any]) -> StoredChunk:
    return StoredChunk(row[0], row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7]))


_CHUNK_COLUMNS = "label, document_id, position, text, source, page, heading, metadata"


class Store:
    """Thread-safe: one connection writes, one reads (WAL lets reads run while a
    write is in progress, and they see only committed data)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._write = self._connect()
        self._write.executescript(_SCHEMA)
        self._read = self._connect()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")  # a commit survives power loss too
        return connection

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._read.close()
            self._write.close()

    # --- settings ------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        with self._read_lock:
            rows = self._read.execute("SELECT key, value FROM info").fetchall()
        return {key: json.loads(value) for key, value in rows}

    def set_info(self, values: Mapping[str, Any]) -> None:
        with self._write_lock:
            self._write.executemany(
                "INSERT OR REPLACE INTO info (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    def generation(self) -> int:
        """Bumped by every committed change, by any process sharing the file;
        snapshots record the one they hold. Cheap: one indexed read."""
        with self._read_lock:
            row = self._read.execute("SELECT value FROM info WHERE key = 'generation'").fetchone()
        return int(json.loads(row[0])) if row else 0

    def labels(self) -> set[int]:
        with self._read_lock:
            return {int(r[0]) for r in self._read.execute("SELECT label FROM chunks")}

    # --- documents -----------------------------------------------------------------------

    def document(self, document_id: str) -> DocumentRecord | None:
        with self._read_lock:
            row = self._read.execute(
                "SELECT id, digest, source, metadata, chunks, pages FROM documents WHERE id = ?",
                (document_id,),
            ).fetchone()
        if row is None:
            return None
        return DocumentRecord(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])

    def documents(self, after: str, limit: int) -> list[DocumentSummary]:
        """Up to `limit` documents ordered by id, those after `after` (all when
        empty): one range read on the primary key's index, whatever the size."""
        with self._read_lock:
            rows = self._read.execute(
                "SELECT id, source, metadata, chunks, pages, update_time FROM documents "
                "WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [DocumentSummary(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5]) for r in rows]

    def counts(self) -> tuple[int, int]:
        """(documents, chunks)."""
        with self._read_lock:
            documents = self._read.execute("SELECT count(*) FROM documents").fetchone()[0]
            chunks = self._read.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return int(documents), int(chunks)

    def replace_document(
        self, record: DocumentRecord, chunks: Sequence[NewChunk]
    ) -> tuple[list[int], list[int], int]:
        """Atomically make `chunks` the document's only chunks; returns (labels
        removed, labels added, the generation this change followed). Labels are
        never reused, so a label names one chunk forever."""
        with self._write_lock:
            cursor = self._write.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                removed = self._drop(cursor, record.id)
                start = int(self._get(cursor, "next_label", 0))
                for offset, chunk in enumerate(chunks):
                    chunk.label = start + offset
                cursor.executemany(
                    "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (c.label, record.id, c.position, c.text, c.source, c.page, c.heading,
                         json.dumps(dict(c.metadata)), c.vector.astype(np.float32).tobytes())
                        for c in chunks
                    ],
                )  # fmt: skip
                cursor.execute(
                    "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (record.id, record.digest, record.source, json.dumps(dict(record.metadata)),
                     len(chunks), record.pages, time.time()),
                )  # fmt: skip
                self._put(cursor, "next_label", start + len(chunks))
                previous = self._bump(cursor)
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        return removed, [c.label for c in chunks], previous

    def delete_documents(self, document_ids: Iterable[str]) -> tuple[int, list[int], int]:
        """Atomically delete the documents; returns (how many existed, labels
        removed, the generation this change followed)."""
        with self._write_lock:
            cursor = self._write.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                existed, removed = 0, []
                for document_id in dict.fromkeys(document_ids):
                    cursor.execute("DELETE FROM documents WHERE id = ?", (document_id,))
                    existed += cursor.rowcount
                    removed += self._drop(cursor, document_id)
                previous = self._bump(cursor) if existed else -1
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        return existed, removed, previous

    @staticmethod
    def _drop(cursor: sqlite3.Cursor, document_id: str) -> list[int]:
        rows = cursor.execute("SELECT label FROM chunks WHERE document_id = ?", (document_id,))
        labels = [int(r[0]) for r in rows]
        cursor.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
        return labels

    @staticmethod
    def _get(cursor: sqlite3.Cursor, key: str, default: Any) -> Any:
        row = cursor.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    @staticmethod
    def _put(cursor: sqlite3.Cursor, key: str, value: Any) -> None:
        cursor.execute(
            "INSERT OR REPLACE INTO info (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )

    def _bump(self, cursor: sqlite3.Cursor) -> int:
        """Advance the generation; returns the one before."""
        previous = int(self._get(cursor, "generation", 0))
        self._put(cursor, "generation", previous + 1)
        return previous

    # --- chunks --------------------------------------------------------------------------

    def chunks(self, labels: Sequence[int]) -> dict[int, StoredChunk]:
        """The chunks still stored among `labels` (a concurrent delete may have
        removed some since a search found them)."""
        found: dict[int, StoredChunk] = {}
        with self._read_lock:
            for start in range(0, len(labels), 500):
                part = list(labels[start : start + 500])
                marks = ",".join("?" * len(part))
                for row in self._read.execute(
                    f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE label IN ({marks})", part
                ):
                    found[row[0]] = _chunk(row)
        return found

    def vectors(self, labels: Sequence[int]) -> tuple[list[int], npt.NDArray[np.float32]]:
        """(the labels still stored, their vectors in that order)."""
        rows: dict[int, bytes] = {}
        with self._read_lock:
            for start in range(0, len(labels), 500):
                part = list(labels[start : start + 500])
                marks = ",".join("?" * len(part))
                query = f"SELECT label, vector FROM chunks WHERE label IN ({marks})"
                rows.update(self._read.execute(query, part).fetchall())
        found = [label for label in labels if label in rows]
        if not found:
            return [], np.zeros((0, 0), dtype=np.float32)
        return found, np.stack([np.frombuffer(rows[label], dtype=np.float32) for label in found])

    def document_chunks(
        self, document_id: str, after: tuple[str, int], limit: int
    ) -> list[StoredChunk]:
        """Chunks ordered by (document, position), after the `after` cursor; all
        documents when `document_id` is empty."""
        where = "(document_id, position) > (?, ?)"
        params: list[Any] = [after[0], after[1]]
        if document_id:
            where += " AND document_id = ?"
            params.append(document_id)
        with self._read_lock:
            rows = self._read.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE {where} "
                "ORDER BY document_id, position LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [_chunk(r) for r in rows]

    def texts(self) -> tuple[int, list[int], list[str]]:
        """(generation, labels, texts) of one consistent snapshot, in label order;
        read on a connection of its own so that writers are not held up."""
        connection = self._connect()
        try:
            connection.execute("BEGIN")
            row = connection.execute("SELECT value FROM info WHERE key = 'generation'").fetchone()
            rows = connection.execute("SELECT label, text FROM chunks ORDER BY label").fetchall()
            connection.execute("COMMIT")
        finally:
            connection.close()
        generation = int(json.loads(row[0])) if row else 0
        return generation, [r[0] for r in rows], [r[1] for r in rows]

    def scan(self, vectors: bool = False) -> Iterator[tuple[StoredChunk, bytes | None]]:
        """Every chunk (and its vector bytes), in label order; for rebuilding indexes."""
        columns = _CHUNK_COLUMNS + (", vector" if vectors else "")
        connection = self._connect()  # its own snapshot, so no lock is held for long
        try:
            for row in connection.execute(f"SELECT {columns} FROM chunks ORDER BY label"):
                yield _chunk(row), (row[8] if vectors else None)
        finally:
            connection.close()
