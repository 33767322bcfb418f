"""What an app's chat retrieves through: a small interface over the Dataset layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class Passage:
    collection: str  # "collections/{id}"
    document_id: str
    chunk_id: str
    score: float  # the retrieval score
    text: str
    rerank_score: float | None = None  # the cross-encoder's, when the search reranked


class Retriever(Protocol):
    async def search(
        self,
        tenant: str,
        collections: Sequence[str],
        query: str,
        k: int,
        score_threshold: float,
        *,
        mode: str = "",
        filter: Mapping[str, Any] | None = None,
        rerank: bool = False,
        rerank_top_n: int = 0,
    ) -> list[Passage]:
        """The best `k` passages over `collections` scoring at least
        `score_threshold`, best first. Only `tenant`'s collections are seen: a
        collection of another tenant answers NotFound, as a missing one does.
        Idempotent; cancelling the caller abandons the search. No deadline of
        its own: the caller bounds it. `mode`: auto, dense, lexical or hybrid
        ("": dense when there is a threshold, else auto); `filter`: metadata
        field -> value (equal), list (any of) or {gte, gt, lte, lt}. `rerank`:
        each collection's top `rerank_top_n` candidates (0: 50) passing the
        threshold are re-scored by the gateway's cross-encoder and the best `k`
        by `rerank_score` returned; FailedPrecondition when it has none."""
        ...


class NoRetrieval:
    """For gateways without a Dataset layer: apps without collections still chat."""

    async def search(
        self,
        tenant: str,
        collections: Sequence[str],
        query: str,
        k: int,
        score_threshold: float,
        *,
        mode: str = "",
        filter: Mapping[str, Any] | None = None,
        rerank: bool = False,
        rerank_top_n: int = 0,
    ) -> list[Passage]:
        if collections:
            raise InvalidArgument(
                "app.retrieval.collections", "this gateway serves no Dataset layer"
            )
        return []
