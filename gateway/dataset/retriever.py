"""The Retriever over the real Dataset layer (indexer.datasets.Datasets)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.apps.retrieval import Passage
from gateway.errors import FailedPrecondition, InvalidArgument, NotFound
from indexer import errors as dataset
from indexer.datasets import Datasets
from indexer.documents import Mode, Query
from indexer.filters import Condition, Eq, In, Range


class DatasetRetriever:
    """Searches each of the app's collections as the calling tenant and keeps the
    best `k` overall. An app with a score threshold searches dense (the threshold
    is a cosine similarity, comparable across collections); one without searches
    hybrid (dense + BM25), whose fused scores only rank. With rerank, the best
    `k` overall are those of highest rerank score."""

    def __init__(self, datasets: Datasets) -> None:
        self._datasets = datasets

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
        if mode:
            try:
                chosen = Mode(mode)
            except ValueError:
                raise InvalidArgument("mode", f"must be one of {', '.join(Mode)}") from None
        else:
            chosen = Mode.DENSE if score_threshold > 0 else Mode.AUTO
        search = Query(
            query, mode=chosen, k=k, conditions=_conditions(filter or {}),
            min_score=score_threshold, rerank=rerank, rerank_top_n=rerank_top_n,
        )  # fmt: skip
        found: list[Passage] = []
        for i, name in enumerate(collections):
            collection_id = name.removeprefix("collections/")
            try:
                hits = await self._datasets.search(tenant, collection_id, search)
            except dataset.NotFound:
                raise NotFound(f"collection {name!r}") from None
            except dataset.InvalidInput as exc:
                raise InvalidArgument(f"app.retrieval.collections[{i}]", str(exc)) from None
            except dataset.NotReady as exc:  # e.g. the embedding model is not fetched yet
                raise FailedPrecondition(str(exc)) from None
            found += [
                Passage(
                    name,
                    hit.chunk.document_id,
                    f"{hit.chunk.document_id}#{hit.chunk.position}",
                    hit.score,
                    hit.chunk.text,
                    hit.rerank_score,
                )
                for hit in hits
            ]
        # One cross-encoder scores every collection's candidates: comparable.
        found.sort(key=lambda p: -(p.score if p.rerank_score is None else p.rerank_score))
        return found[:k]


def _conditions(spec: Mapping[str, Any]) -> list[Condition]:
    """{field: value | [values] | {gte, gt, lte, lt}} -> the index's conditions."""
    found: list[Condition] = []
    for field, value in spec.items():
        if isinstance(value, Mapping):
            bounds = {k: value[k] for k in ("gte", "gt", "lte", "lt") if k in value}
            if not bounds or len(bounds) != len(value):
                raise InvalidArgument(f"filter.{field}", "a range takes gte, gt, lte and lt only")
            if not all(
                isinstance(b, int | float) and not isinstance(b, bool) for b in bounds.values()
            ):
                raise InvalidArgument(f"filter.{field}", "range bounds must be numbers")
            found.append(Range(field, **{k: float(v) for k, v in bounds.items()}))
        elif isinstance(value, list):
            found.append(In(field, tuple(value)))
        else:
            found.append(Eq(field, value))
    return found
