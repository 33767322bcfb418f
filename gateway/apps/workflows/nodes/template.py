"""`template`: Jinja2 (the app prompts' sandbox) over upstream outputs -> text."""

from __future__ import annotations

from typing import Any, ClassVar

from gateway.apps.workflows import refs
from gateway.apps.workflows.nodes.base import NodeContext, NodeType, Outcome


class Template(NodeType):
    name = "template"
    description = "Render a Jinja2 template (sandboxed) over upstream outputs."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["template"],
        "properties": {"template": {"type": "string", "description": "Jinja2 template"}},
    }
    outputs: ClassVar[dict[str, str]] = {"text": "string"}

    async def run(self, ctx: NodeContext) -> Outcome:
        return Outcome({"text": refs.text(ctx.resolve("template", ""))})
