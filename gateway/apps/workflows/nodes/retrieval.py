"""`retrieval`: search the tenant's collections; chunks with scores and citations.

With `rerank`, each collection's top `rerank_top_n` candidates are re-scored by
the gateway's cross-encoder (dataset.reranker) and the chunks come ordered by
`rerank_score`; `score` and `min_score` stay the retrieval's, and `top_score`
is the best rerank score. A gateway without a reranker fails the node with
FAILED_PRECONDITION.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gateway.apps.workflows import refs
from gateway.apps.workflows.nodes.base import NodeContext, NodeType, Outcome

MODES = ("auto", "dense", "lexical", "hybrid")


class Retrieval(NodeType):
    name = "retrieval"
    description = "Search collections (dense, lexical or hybrid) for a templated query."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["collections", "query"],
        "properties": {
            "collections": {
                "type": "array", "minItems": 1, "maxItems": 16,
                "items": {"type": "string", "pattern": "^(collections/)?[A-Za-z0-9_.-]+$"},
            },
            "query": {"type": "string", "description": "template, e.g. {{ start.question }}"},
            "k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 4},
            "mode": {"enum": list(MODES), "default": "auto"},
            "min_score": {
                "type": "number", "minimum": 0, "default": 0,
                "description": "on the retrieval score, before any rerank",
            },
            "rerank": {
                "type": "boolean", "default": False,
                "description": "re-score the candidates with the gateway's cross-encoder",
            },
            "rerank_top_n": {
                "type": "integer", "minimum": 1, "maximum": 1000, "default": 50,
                "description": "candidates per collection to rerank (never fewer than k)",
            },
            "filter": {
                "type": "object",
                "description": "metadata field -> value (equal), [values] (any of), "
                "or {gte, gt, lte, lt}",
            },
        },
    }  # fmt: skip
    outputs: ClassVar[dict[str, str]] = {
        "chunks": "array",
        "top_score": "number",
        "count": "integer",
        "text": "string",
    }
    literal_fields = frozenset(
        {"collections", "k", "mode", "min_score", "filter", "rerank", "rerank_top_n"}
    )

    async def run(self, ctx: NodeContext) -> Outcome:
        config = ctx.node.config
        collections = [
            c if c.startswith("collections/") else f"collections/{c}" for c in config["collections"]
        ]
        query = refs.text(ctx.resolve("query"))
        passages = await ctx.services.retriever.search(
            ctx.tenant, collections, query, int(config.get("k", 4)),
            float(config.get("min_score", 0)), mode=config.get("mode", "auto"),
            filter=config.get("filter") or None, rerank=bool(config.get("rerank", False)),
            rerank_top_n=int(config.get("rerank_top_n", 0)),
        )  # fmt: skip
        chunks = [
            {
                "text": p.text, "score": p.score, "collection": p.collection,
                "document_id": p.document_id, "chunk_id": p.chunk_id,
                **({} if p.rerank_score is None else {"rerank_score": p.rerank_score}),
            }
            for p in passages
        ]  # fmt: skip
        best = "rerank_score" if config.get("rerank") else "score"
        return Outcome({
            "chunks": chunks,
            "top_score": chunks[0].get(best, chunks[0]["score"]) if chunks else 0.0,
            "count": len(chunks),
            "text": "\n\n".join(p.text for p in passages),
        })  # fmt: skip
