"""`aggregate`: the first non-empty of several branches' values (the branch that ran)."""

from __future__ import annotations

from typing import Any, ClassVar

from gateway.apps.workflows.nodes.base import NodeContext, NodeType, Outcome


class Aggregate(NodeType):
    name = "aggregate"
    description = (
        "The first non-empty value among `sources` (templates over the branches that "
        "meet here): joins the arms of an if_else or a classifier."
    )
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["sources"],
        "properties": {
            "sources": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        },
    }
    outputs: ClassVar[dict[str, str]] = {"value": "any", "source": "integer"}

    async def run(self, ctx: NodeContext) -> Outcome:
        for i, value in enumerate(ctx.resolve("sources", [])):
            if not _empty(value):
                return Outcome({"value": value, "source": i})
        return Outcome({"value": None, "source": -1})


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {} or not _defined(value)


def _defined(value: Any) -> bool:
    import jinja2

    return not isinstance(value, jinja2.Undefined)
