"""Tunables of the Dataset layer, validated once (they sit inside the gateway's config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IndexParams(_Frozen):
    """HNSW graph parameters (hnswlib, cosine) and the filtered-search switch."""

    m: int = Field(default=16, ge=2, le=128, description="graph degree")
    ef_construction: int = Field(default=200, ge=8)
    ef: int = Field(default=64, ge=1, description="search breadth; restored after load")
    initial_capacity: int = Field(default=1024, ge=16, description="grows by doubling")
    exact_threshold: int = Field(
        default=5000,
        ge=0,
        description="a filter matching at most this many chunks is searched exactly",
    )


class ChunkParams(_Frozen):
    """Chunk size in the embedder's own tokens; clamped to what the model embeds."""

    tokens: int = Field(default=512, ge=16, le=8192)
    overlap: int = Field(default=64, ge=0)


class SearchParams(_Frozen):
    """Hybrid search: the dense and lexical rankings fused, by reciprocal rank
    (`rrf`, the default) or by their scores, each min-max normalised over its
    candidates and weighted (`score`)."""

    fusion: Literal["rrf", "score"] = "rrf"
    rrf_k: int = Field(default=60, ge=1)
    dense_weight: float = Field(default=1.0, ge=0)
    lexical_weight: float = Field(default=1.0, ge=0)
    candidates: int = Field(default=50, ge=1, description="per ranking, before fusion")
    lexical_sync_limit: int = Field(
        default=20000,
        ge=0,
        description="up to this many chunks a search after a write waits for BM25 to be "
        "rebuilt; bigger collections answer from the previous BM25 index meanwhile",
    )
    max_k: int = Field(default=1000, ge=1)


class Settings(_Frozen):
    index: IndexParams = IndexParams()
    chunk: ChunkParams = ChunkParams()
    search: SearchParams = SearchParams()
