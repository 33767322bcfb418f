"""`extractor`: a model fills a JSON object described by a JSON Schema.

    model: small
    input: "{{ start.email }}"
    schema: {type: object, required: [name], properties: {name: {type: string}}}
    instruction: "Dates as YYYY-MM-DD."   # optional

Asks for structured output and checks the reply against the schema (its
`$ref`s local only, as for `llm`'s json_schema). A reply
that is not JSON or does not match is sent back once, with what is wrong, for
a second try; a second bad reply fails the node. `attempts` is 1 or 2.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.apps.workflows import refs
from gateway.apps.workflows.document import Node, Problem
from gateway.apps.workflows.nodes.base import (
    NodeContext,
    NodeFailed,
    NodeType,
    Outcome,
    Shape,
    usage_of,
)
from gateway.apps.workflows.nodes.llm import call, params, parse_json, schema_problems
from router.types import Message

AGAIN = "Reply again with only a JSON object that matches the schema."


class Extractor(NodeType):
    name = "extractor"
    description = "A model extracts a JSON object matching a schema from the input (one retry)."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["model", "input", "schema"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "description": "a model alias"},
            "input": {"type": "string", "description": "template: the text to read"},
            "schema": {"type": "object", "description": "JSON Schema of the object to extract"},
            "instruction": {"type": "string", "description": "template: more guidance"},
        },
    }
    outputs: ClassVar[dict[str, str]] = {"data": "object", "attempts": "integer"}
    literal_fields = frozenset({"model", "schema"})

    def check(self, node: Node, shape: Shape) -> list[Problem]:
        schema = node.config.get("schema")
        if not isinstance(schema, Mapping):
            return []  # the config's own schema says so
        problems = schema_problems(node, "schema")
        if problems:
            return problems
        if schema.get("type") != "object":
            return [Problem(node.id, "config.schema", "must describe an object (type: object)")]
        return []

    async def run(self, ctx: NodeContext) -> Outcome:
        config = ctx.node.config
        schema = config["schema"]
        system = (
            "Extract from the user's text the data this JSON Schema describes; reply with "
            f"one JSON object that matches it, nothing else.\n{json.dumps(schema)}"
        )
        instruction = refs.text(ctx.resolve("instruction"))
        if instruction:
            system += f"\n{instruction}"
        messages: tuple[Message, ...] = (
            Message("system", system),
            Message("user", refs.text(ctx.resolve("input"))),
        )
        p = params({"params": {"temperature": 0.0}}, schema)
        text, _, usage = await call(ctx, config["model"], messages, p, stream=False)
        try:
            return Outcome({"data": parse_json(text, schema), "attempts": 1}, usage=usage)
        except NodeFailed as exc:
            error = str(exc)
        messages += (Message("assistant", text), Message("user", f"{error}. {AGAIN}"))
        text, _, _ = await call(ctx, config["model"], messages, p, stream=False)
        try:
            data = parse_json(text, schema)
        except NodeFailed as exc:
            raise NodeFailed(f"the retry failed too: {exc} (first: {error})") from None
        return Outcome({"data": data, "attempts": 2}, usage=usage_of(ctx.usage))  # both calls
