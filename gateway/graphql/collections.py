"""Collections: their documents (paged), chunk counts, and search."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from google.protobuf import struct_pb2
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.graphql.context import GraphContext
from gateway.graphql.convert import Long, json_of, time_of
from gateway.graphql.errors import bad
from gateway.graphql.pagination import DEFAULT_FIRST, Connection, Page
from gateway.graphql.rpcs import DATASET
from gateway.pb import dataset_pb2 as pb


@strawberry.enum
class SearchMode(Enum):
    AUTO = pb.SEARCH_MODE_UNSPECIFIED  # hybrid where the collection has both indexes
    DENSE = pb.SEARCH_MODE_DENSE
    LEXICAL = pb.SEARCH_MODE_LEXICAL
    HYBRID = pb.SEARCH_MODE_HYBRID


@strawberry.input(description="One condition on a metadata field: eq, in, or a range")
class Condition:
    field: str
    eq: JSON | None = None
    in_: list[JSON] | None = strawberry.field(default=None, name="in")
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None

    def to_pb(self, where: str) -> pb.Condition:
        given_bounds = {"gte": self.gte, "gt": self.gt, "lte": self.lte, "lt": self.lt}
        bounds = {k: v for k, v in given_bounds.items() if v is not None}
        given = [self.eq is not None, self.in_ is not None, bool(bounds)]
        if sum(given) != 1:
            raise bad(f"{where}: give exactly one of eq, in, or range bounds")
        condition = pb.Condition(field=self.field)
        if self.eq is not None:
            condition.eq.CopyFrom(_value(self.eq))
        elif self.in_ is not None:
            getattr(condition, "in").values.extend(_value(v) for v in self.in_)
        else:
            condition.range.CopyFrom(pb.Range(**bounds))
        return condition


def _value(value: Any) -> struct_pb2.Value:
    holder = struct_pb2.Struct()
    holder.update({"v": value})
    return holder.fields["v"]


@strawberry.type
class Chunk:
    id: str
    document_id: str
    text: str
    source: str
    position: int
    page: int
    heading: str
    metadata: JSON | None


@strawberry.type
class ScoredChunk:
    chunk: Chunk
    score: float = strawberry.field(description="The retrieval score of the search mode")
    rerank_score: float | None = strawberry.field(
        description="The cross-encoder's score, by which results are ordered; null without rerank"
    )


@strawberry.type
class Document:
    id: str
    source: str
    chunks: int
    pages: int
    metadata: JSON | None
    update_time: datetime | None


def _document(d: pb.DocumentInfo) -> Document:
    return Document(
        id=d.id, source=d.source, chunks=d.chunks, pages=d.pages,
        metadata=json_of(d, "metadata"), update_time=time_of(d, "update_time"),
    )  # fmt: skip


def _scored(s: pb.ScoredChunk) -> ScoredChunk:
    c = s.chunk
    chunk = Chunk(
        id=c.id, document_id=c.document_id, text=c.text, source=c.source,
        position=c.position, page=c.page, heading=c.heading, metadata=json_of(c, "metadata"),
    )  # fmt: skip
    rerank_score = s.rerank_score if s.HasField("rerank_score") else None
    return ScoredChunk(chunk=chunk, score=s.score, rerank_score=rerank_score)


@strawberry.type
class Collection:
    name: str
    display_name: str
    embedding_model: str
    dimensions: int
    chunk_tokens: int
    chunk_overlap: int
    document_count: Long
    chunk_count: Long
    create_time: datetime | None

    @classmethod
    def from_pb(cls, c: pb.Collection) -> Collection:
        return cls(
            name=c.name, display_name=c.display_name, embedding_model=c.embedding_model,
            dimensions=c.dimensions, chunk_tokens=c.chunk_tokens,
            chunk_overlap=c.chunk_overlap, document_count=Long(c.document_count),
            chunk_count=Long(c.chunk_count), create_time=time_of(c, "create_time"),
        )  # fmt: skip

    @strawberry.field
    async def documents(
        self, info: Info[GraphContext, None], first: int = DEFAULT_FIRST, after: str | None = None
    ) -> Connection[Document]:
        page = Page.of(first, after)
        request = pb.ListDocumentsRequest(
            collection=self.name, page_size=page.size, page_token=page.token
        )
        reply = await info.context.unary(DATASET["ListDocuments"], request)
        return page.connection(reply.documents, reply.next_page_token, _document)

    @strawberry.field(
        description="The k best chunks for `query`; with `rerank`, the top `rerankTopN` "
        "candidates (0: 50) are re-scored by the gateway's cross-encoder and the k best "
        "returned by `rerankScore`"
    )
    async def search(
        self,
        info: Info[GraphContext, None],
        query: str,
        mode: SearchMode = SearchMode.AUTO,
        k: int = 10,
        filter: list[Condition] | None = None,
        min_score: float = 0.0,
        rerank: bool = False,
        rerank_top_n: int = 0,
    ) -> list[ScoredChunk]:
        if not 1 <= k <= 100:
            raise bad(f"k: must be 1 to 100, got {k}")
        conditions = [c.to_pb(f"filter[{i}]") for i, c in enumerate(filter or ())]
        request = pb.SearchRequest(
            collection=self.name, text=query, mode=mode.value, k=k,
            filter=pb.Filter(conditions=conditions), min_score=min_score, rerank=rerank,
            rerank_top_n=rerank_top_n,
        )  # fmt: skip
        reply = await info.context.unary(DATASET["Search"], request)
        return [_scored(s) for s in reply.results]


def collections_loader(ctx: GraphContext) -> DataLoader[str, Collection | None]:
    """Collections by name from ListCollections (the caller's tenant's), paged
    until every name asked for is found: a query over N apps makes one call,
    not N. Null for a name not found (deleted, or not the caller's)."""

    async def load(names: list[str]) -> list[Collection | None]:
        found: dict[str, Collection] = {}
        token = ""
        while True:
            request = pb.ListCollectionsRequest(page_size=1000, page_token=token)
            reply = await ctx.unary(DATASET["ListCollections"], request)
            found.update((c.name, Collection.from_pb(c)) for c in reply.collections)
            token = reply.next_page_token
            if not token or all(n in found for n in names):
                return [found.get(n) for n in names]

    return DataLoader(load_fn=load)


@strawberry.type
class CollectionQueries:
    @strawberry.field
    async def collections(
        self, info: Info[GraphContext, None], first: int = DEFAULT_FIRST, after: str | None = None
    ) -> Connection[Collection]:
        page = Page.of(first, after)
        request = pb.ListCollectionsRequest(page_size=page.size, page_token=page.token)
        reply = await info.context.unary(DATASET["ListCollections"], request)
        return page.connection(reply.collections, reply.next_page_token, Collection.from_pb)

    @strawberry.field(description='"collections/{id}"; NOT_FOUND when absent or not yours')
    async def collection(self, info: Info[GraphContext, None], name: str) -> Collection:
        reply = await info.context.unary(
            DATASET["GetCollection"], pb.GetCollectionRequest(name=name)
        )
        return Collection.from_pb(reply)
