"""`answer`: text for the caller, streamed as its sources produce it.

The template's parts are sent in order: literal text at once, a reference to a
streaming node's `text` (`{{ reply.text }}` of an `llm`) token by token as that
node produces it, any other expression once its node has settled. So an
`answer` starts as soon as its predecessors have started (it is eager), and
the caller sees the first token while the model is still writing. A template
with `{% %}` blocks renders whole once every source has settled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.apps.workflows import refs
from gateway.apps.workflows.document import Definition, Node
from gateway.apps.workflows.nodes.base import NodeContext, NodeFailed, NodeType, Outcome


class Answer(NodeType):
    name = "answer"
    description = "Text for the caller, streamed (text_delta events) as its sources produce it."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["text"],
        "properties": {
            "text": {"type": "string", "description": "template, e.g. {{ reply.text }}"}
        },
    }
    outputs: ClassVar[dict[str, str]] = {"text": "string"}
    streams = True
    eager = True

    def output_types(self, node: Node, definition: Definition) -> Mapping[str, str]:
        return self.outputs

    async def run(self, ctx: NodeContext) -> Outcome:
        source = str(ctx.node.config.get("text", ""))
        parts = refs.segments(source)
        sources = {n for n, _ in refs.references(source)}
        if parts is None:  # blocks: render whole, once every source has settled
            for node in sources:
                await ctx.streams.settled(node)
            text = refs.text(_render(source, ctx))
            if text:
                ctx.emit(text)
            return Outcome({"text": text})
        out: list[str] = []
        for kind, part in parts:
            if kind == "text":
                piece = part
            else:
                streamed = _streamed_source(part, ctx)
                if streamed is not None:
                    async for delta in ctx.streams.follow(streamed):
                        out.append(delta)
                        ctx.emit(delta)
                    continue
                for node, _ in refs.references("{{ " + part + " }}"):
                    await ctx.streams.settled(node)
                piece = refs.text(_evaluate(part, ctx))
            if piece:
                out.append(piece)
                ctx.emit(piece)
        return Outcome({"text": "".join(out)})


def _streamed_source(expression: str, ctx: NodeContext) -> str | None:
    """The node id when `expression` is exactly `<node>.text` of a streaming node."""
    node, dot, field = expression.partition(".")
    if dot and field == "text" and node in ctx.streaming:
        return node
    return None


def _render(source: str, ctx: NodeContext) -> object:
    try:
        return refs.render(source, ctx.scope)
    except refs.TemplateError as exc:
        raise NodeFailed(f"config.text: {exc}") from None


def _evaluate(expression: str, ctx: NodeContext) -> object:
    try:
        return refs.evaluate(expression, ctx.scope)
    except refs.TemplateError as exc:
        raise NodeFailed(f"config.text: {exc}") from None
