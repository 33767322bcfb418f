"""`end`: what the caller receives, each output a template over upstream outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.apps.workflows.document import Definition, Node
from gateway.apps.workflows.nodes.base import NodeContext, NodeType, Outcome


class End(NodeType):
    name = "end"
    description = "The run's outputs: each a template over the outputs of upstream nodes."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["outputs"],
        "properties": {
            "outputs": {
                "type": "object",
                "description": "output name -> template, e.g. {answer: '{{ reply.text }}'}",
                "additionalProperties": {"type": "string"},
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            }
        },
    }

    def output_types(self, node: Node, definition: Definition) -> Mapping[str, str]:
        return {name: "any" for name in node.config.get("outputs", {})}

    async def run(self, ctx: NodeContext) -> Outcome:
        return Outcome(ctx.resolve("outputs", {}))
