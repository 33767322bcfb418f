"""Protobuf <-> Dataset domain types, in one place."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
from google.protobuf import json_format, struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.pb import dataset_pb2 as pb
from indexer.analyzer import Analysis
from indexer.documents import CollectionInfo, Hit, Mode, Query
from indexer.errors import InvalidInput
from indexer.filters import Condition, Eq, In, Range
from indexer.store import DocumentSummary, StoredChunk

PREFIX = "collections/"
MODES = {
    pb.SEARCH_MODE_UNSPECIFIED: Mode.AUTO,
    pb.SEARCH_MODE_DENSE: Mode.DENSE,
    pb.SEARCH_MODE_LEXICAL: Mode.LEXICAL,
    pb.SEARCH_MODE_HYBRID: Mode.HYBRID,
}


def collection_id(name: str, field: str = "collection") -> str:
    """The id in "collections/{id}" (a bare id is accepted too)."""
    if not name:
        raise InvalidInput(field, "is required (collections/{id})")
    return name.removeprefix(PREFIX)


def collection_to_pb(info: CollectionInfo) -> pb.Collection:
    created = Timestamp()
    created.FromNanoseconds(int(info.create_time * 1e9))
    return pb.Collection(
        name=PREFIX + info.id,
        display_name=info.display_name,
        embedding_model=info.embedding_model,
        dimensions=info.dimensions,
        chunk_tokens=info.chunk_tokens,
        chunk_overlap=info.chunk_overlap,
        document_count=info.documents,
        chunk_count=info.chunks,
        create_time=created,
        lexical=pb.LexicalAnalysis(
            language=info.lexical.language, k1=info.lexical.k1, b=info.lexical.b
        ),
    )


def analysis_from_pb(spec: pb.LexicalAnalysis) -> Analysis:
    """The analysis a create asks for; what it leaves out takes the default."""
    default = Analysis()
    return Analysis(
        spec.language or default.language,
        spec.k1 if spec.HasField("k1") else default.k1,
        spec.b if spec.HasField("b") else default.b,
    )


def document_to_pb(document: DocumentSummary) -> pb.DocumentInfo:
    updated = Timestamp()
    updated.FromNanoseconds(int(document.update_time * 1e9))
    return pb.DocumentInfo(
        id=document.id,
        source=document.source,
        chunks=document.chunks,
        pages=document.pages,
        metadata=dict_to_struct(document.metadata),
        update_time=updated,
    )


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(struct)


def dict_to_struct(values: Any) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def chunk_to_pb(chunk: StoredChunk) -> pb.Chunk:
    return pb.Chunk(
        id=f"{chunk.document_id}#{chunk.position}",
        document_id=chunk.document_id,
        text=chunk.text,
        source=chunk.source,
        position=chunk.position,
        page=chunk.page,
        heading=chunk.heading,
        metadata=dict_to_struct(chunk.metadata),
    )


def hit_to_pb(hit: Hit) -> pb.ScoredChunk:
    return pb.ScoredChunk(
        chunk=chunk_to_pb(hit.chunk), score=hit.score, rerank_score=hit.rerank_score
    )


def _value(value: struct_pb2.Value) -> Any:
    return json_format.MessageToDict(value)


def condition_from_pb(condition: pb.Condition, index: int) -> Condition:
    field = f"filter.conditions[{index}]"
    if not condition.field:
        raise InvalidInput(f"{field}.field", "is required")
    op = condition.WhichOneof("op")
    if op == "eq":
        return Eq(condition.field, _value(condition.eq))
    if op == "in":
        return In(condition.field, tuple(_value(v) for v in getattr(condition, "in").values))
    if op == "range":
        bounds = condition.range
        limits = {
            name: getattr(bounds, name) if bounds.HasField(name) else None
            for name in ("gte", "gt", "lte", "lt")
        }
        if all(v is None for v in limits.values()):
            raise InvalidInput(f"{field}.range", "needs at least one bound")
        for name, limit in limits.items():
            if limit is not None and not math.isfinite(limit):
                raise InvalidInput(f"{field}.range.{name}", f"must be a finite number, got {limit}")
        return Range(condition.field, **limits)
    raise InvalidInput(field, "needs one of eq, in, range")


def query_from_pb(request: pb.SearchRequest) -> Query:
    kind = request.WhichOneof("query")
    text = request.text if kind == "text" else ""
    vector = None
    if kind == "vector":
        vector = np.asarray(request.vector.values, dtype=np.float32)
        if not len(vector) or not np.all(np.isfinite(vector)):
            raise InvalidInput("vector", "must be a non-empty vector of finite numbers")
    elif not text.strip():
        raise InvalidInput("text", "a search needs query text or a vector")
    if request.mode not in MODES:
        raise InvalidInput("mode", f"unknown search mode {request.mode}")
    conditions = [condition_from_pb(c, i) for i, c in enumerate(request.filter.conditions)]
    return Query(
        text=text,
        vector=vector,
        mode=MODES[request.mode],
        k=request.k or 10,
        conditions=conditions,
        min_score=request.min_score,
        rerank=request.rerank,
        rerank_top_n=request.rerank_top_n,
    )


def encode_cursor(document_id: str, position: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([document_id, position]).encode()).decode()


def decode_cursor(token: str) -> tuple[str, int]:
    """The position after which a page starts; ("", -1) for the first page."""
    if not token:
        return "", -1
    try:
        document_id, position = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(document_id), int(position)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("page_token", "is not a token this service issued") from exc


def encode_document_cursor(document_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": document_id}).encode()).decode()


def decode_document_cursor(token: str) -> str:
    """The document id after which a ListDocuments page starts; "" for the first page."""
    if not token:
        return ""
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput("page_token", "is not a token this service issued") from exc
    if not isinstance(after, str):
        raise InvalidInput("page_token", "is not a token this service issued")
    return after
