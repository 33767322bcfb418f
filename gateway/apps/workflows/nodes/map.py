"""`map`: run a sub-graph once per item of a list, a bounded number at a time.

    items: "{{ search.chunks }}"          # a template resolving to a list
    concurrency: 4                       # at most Services.map_concurrency
    nodes: [{id: summary, type: llm, config: {... "{{ each.item.text }}" ...}}]
    edges: []
    output: "{{ summary.text }}"         # each item's result

Inside the sub-graph `{{ <map id>.item }}` and `{{ <map id>.index }}` are the
current item and its position; the sub-graph also reads the map's upstream.
`results` holds the items' results in input order. The first item that fails
fails the node (the others are cancelled).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import jinja2

from gateway.apps.workflows import refs
from gateway.apps.workflows.document import Definition, DefinitionError, Node, Problem, parse
from gateway.apps.workflows.nodes.base import NodeContext, NodeFailed, NodeType, Outcome, Shape
from gateway.errors import GatewayError
from router.errors import RouterError
from router.types import Usage

MAX_ITEMS = 10_000
_LONE_REF = re.compile(r"^\s*\{\{\s*([a-z][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*$")


class Map(NodeType):
    name = "map"
    description = "Run a sub-graph for each item of a list (bounded concurrency); results in order."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["items", "nodes", "output"],
        "properties": {
            "items": {"type": "string", "description": "template resolving to a list"},
            "concurrency": {"type": "integer", "minimum": 1, "maximum": 256},
            "nodes": {"type": "array", "minItems": 1, "items": {"type": "object"}},
            "edges": {"type": "array", "items": {"type": "object"}},
            "output": {"type": "string", "description": "template over the sub-graph's nodes"},
        },
    }
    outputs: ClassVar[dict[str, str]] = {"results": "array", "count": "integer"}
    literal_fields = frozenset({"nodes", "edges", "output"})

    def inner_scope(self, node: Node) -> Mapping[str, str]:
        return {"item": "any", "index": "integer"}

    def check(self, node: Node, shape: Shape) -> list[Problem]:
        source = node.config.get("items")
        if not isinstance(source, str):
            return []
        if not refs.is_template(source):
            return [Problem(node.id, "config.items", "must be a template resolving to a list")]
        m = _LONE_REF.match(source)
        if m is None:
            return []
        kind = shape.outputs.get(m.group(1), {}).get(m.group(2), "any")
        if kind in ("array", "any"):
            return []
        return [Problem(
            node.id, "config.items",
            f"map needs a list, but {m.group(1)}.{m.group(2)} is {kind}",
        )]  # fmt: skip

    async def run(self, ctx: NodeContext) -> Outcome:
        config = ctx.node.config
        items = ctx.resolve("items")
        if not isinstance(items, list | tuple):
            raise NodeFailed(f"config.items: must resolve to a list, got {type(items).__name__}")
        if len(items) > MAX_ITEMS:
            raise NodeFailed(f"config.items: at most {MAX_ITEMS} items, got {len(items)}")
        sub = _subgraph(config)
        bound = ctx.services.map_concurrency
        limit = max(1, min(config.get("concurrency", bound), bound))
        results: list[Any] = [None] * len(items)
        usage = Usage()
        todo = iter(enumerate(items))

        async def worker() -> None:
            nonlocal usage
            for i, item in todo:  # shared: each worker takes the next item
                scope = {**ctx.scope, ctx.node.id: {"item": item, "index": i}}
                try:
                    inner, used = await ctx.subrun(sub, scope)
                    value = refs.render(config["output"], inner)
                except (GatewayError, RouterError, ValueError, NodeFailed) as exc:
                    raise NodeFailed(f"item {i}: {exc}") from None
                results[i] = None if isinstance(value, jinja2.Undefined) else value
                usage = Usage(
                    usage.input_tokens + used.input_tokens, usage.output_tokens + used.output_tokens
                )

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(limit, len(items))):
                    group.create_task(worker())
        except* NodeFailed as failed:
            raise failed.exceptions[0] from None
        return Outcome({"results": results, "count": len(results)}, usage=usage)


def _subgraph(config: Mapping[str, Any]) -> Definition:
    try:
        return parse({"nodes": config["nodes"], "edges": config.get("edges", [])}, "config.")
    except DefinitionError as exc:  # validation reports these when the workflow is saved
        raise NodeFailed(str(exc)) from None
