"""What a caller hands the Dataset layer, and what it gets back."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer.analyzer import DEFAULT as DEFAULT_ANALYSIS
from indexer.analyzer import Analysis
from indexer.filters import Condition
from indexer.store import StoredChunk

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DocumentInput:
    """A document to ingest: `text`, or a file at `path` that the client named
    `filename` (its type is taken from `mime_type`, else the extension)."""

    id: str
    text: str | None = None
    path: Path | None = None
    filename: str = ""
    mime_type: str = ""
    source: str = ""  # shown with each chunk; defaults to the filename, else the id
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class IngestResult:
    document_id: str
    chunks: int
    pages: int
    unchanged: bool = False  # same content as stored: nothing was re-embedded


class Mode(enum.StrEnum):
    AUTO = "auto"  # hybrid for a text query, dense for a vector
    DENSE = "dense"
    LEXICAL = "lexical"
    HYBRID = "hybrid"


@dataclass(frozen=True, slots=True)
class Query:
    """`min_score` applies to the mode's own score: cosine similarity (dense),
    BM25 (lexical) or the weighted reciprocal-rank sum (hybrid), never to the
    rerank score. `rerank`: the top `rerank_top_n` candidates (0: 50; never
    fewer than `k`) that pass the filters and `min_score` are re-scored by the
    cross-encoder, and the best `k` by its score returned (needs `text`)."""

    text: str = ""
    vector: npt.NDArray[np.float32] | None = None
    mode: Mode = Mode.AUTO
    k: int = 10
    conditions: Sequence[Condition] = ()
    min_score: float = 0.0
    rerank: bool = False
    rerank_top_n: int = 0


@dataclass(frozen=True, slots=True)
class Hit:
    """`score` is the retrieval score; `rerank_score` the cross-encoder's, set
    only when the search reranked."""

    chunk: StoredChunk
    score: float
    rerank_score: float | None = None


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    tenant: str
    id: str
    display_name: str
    embedding_model: str
    dimensions: int
    chunk_tokens: int
    chunk_overlap: int
    create_time: float
    documents: int = 0
    chunks: int = 0
    lexical: Analysis = DEFAULT_ANALYSIS
