"""The Retriever over the real Dataset layer (indexer.datasets.Datasets)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.apps.retrieval import Passage
from gateway.errors import FailedPrecondition, InvalidArgument, NotFound
from indexer import errors as dataset
from indexer.datasets import Datasets
from indexer.documents import Mode, Query


class DatasetRetriever:
    """Searches each of the app's collections as the calling tenant and keeps the
    best `k` overall. An app with a score threshold searches dense (the threshold
    is a cosine similarity, comparable across collections); one without searches
    hybrid (dense + BM25), whose fused scores only rank."""

    def __init__(self, datasets: Datasets) -> None:
        self._datasets = datasets

    async def search(
        self, tenant: str, collections: Sequence[str], query: str, k: int, score_threshold: float
    ) -> list[Passage]:
        mode = Mode.DENSE if score_threshold > 0 else Mode.AUTO
        found: list[Passage] = []
        for i, name in enumerate(collections):
            collection_id = name.removeprefix("collections/")
            try:
                hits = await self._datasets.search(
                    tenant, collection_id, Query(query, mode=mode, k=k, min_score=score_threshold)
                )
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
                )
                for hit in hits
            ]
        found.sort(key=lambda p: -p.score)
        return found[:k]
