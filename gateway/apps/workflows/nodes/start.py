"""`start`: where a run begins; its outputs are the run's inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.apps.workflows.document import Definition, Node
from gateway.apps.workflows.nodes.base import NodeContext, NodeType, Outcome


class Start(NodeType):
    name = "start"
    description = "The run's inputs, as declared in the workflow's `inputs`."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {},
    }

    def output_types(self, node: Node, definition: Definition) -> Mapping[str, str]:
        return {i.name: i.type for i in definition.inputs}

    async def run(self, ctx: NodeContext) -> Outcome:
        return Outcome(dict(ctx.inputs))
