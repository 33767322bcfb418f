"""`llm`: one model call through the Router, messages templated from variables.

Streams its tokens (an `answer` that references `{{ <id>.text }}` forwards
them as they come). With `json_schema`, asks for structured output and checks
the reply against the schema; `json` holds the parsed object.

A schema's `$ref`s are local only (`#/$defs/x`): one naming another document
is refused when the workflow is saved, and the check never fetches one (an
unresolvable reference fails the node), so a schema cannot make the gateway
open a URL.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import jsonschema
import referencing
import referencing.exceptions

from gateway.apps.workflows import refs
from gateway.apps.workflows.document import Node, Problem
from gateway.apps.workflows.nodes.base import (
    ModelUse,
    NodeContext,
    NodeFailed,
    NodeType,
    Outcome,
    Shape,
)
from router.errors import RouterError
from router.types import Message, Params, Request, ResponseFormat, Usage

PARAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "stop": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
        "seed": {"type": "integer"},
    },
}
MESSAGES_SCHEMA: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["role", "content"],
        "properties": {
            "role": {"enum": ["system", "user", "assistant"]},
            "content": {"type": "string", "description": "template"},
        },
    },
}


class Llm(NodeType):
    name = "llm"
    description = "Call a model alias with templated messages; streams its text."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "description": "a model alias"},
            "messages": MESSAGES_SCHEMA,
            "params": PARAMS_SCHEMA,
            "json_schema": {"type": "object", "description": "structured output: its schema"},
        },
    }
    outputs: ClassVar[dict[str, str]] = {
        "text": "string",
        "finish_reason": "string",
        "usage": "object",
        "json": "any",
    }
    streams = True
    literal_fields = frozenset({"model", "params", "json_schema"})

    def check(self, node: Node, shape: Shape) -> list[Problem]:
        return schema_problems(node, "json_schema")

    async def run(self, ctx: NodeContext) -> Outcome:
        config = ctx.node.config
        messages = tuple(
            Message(
                m["role"], refs.text(refs.resolve(m["content"], ctx.scope, f"config.messages[{i}]"))
            )
            for i, m in enumerate(config["messages"])
        )
        schema = config.get("json_schema")
        text, finish, usage = await call(ctx, config["model"], messages, params(config, schema))
        outputs: dict[str, Any] = {
            "text": text,
            "finish_reason": finish,
            "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
            "json": None,
        }
        if schema is not None:
            outputs["json"] = parse_json(text, schema)
        return Outcome(outputs, usage=usage)


def params(config: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> Params:
    p = config.get("params", {})
    return Params(
        temperature=p.get("temperature"),
        top_p=p.get("top_p"),
        max_tokens=p.get("max_tokens"),
        stop=tuple(p.get("stop", ())),
        seed=p.get("seed"),
        response_format=(
            ResponseFormat("json_schema", "output", schema) if schema is not None else None
        ),
    )


async def call(
    ctx: NodeContext, model: str, messages: tuple[Message, ...], p: Params, *, stream: bool = True
) -> tuple[str, str, Usage]:
    """Stream one call through the Router (emitting its text when `stream`);
    records its usage whether it answers or fails."""
    request = Request(model, messages, p, request_id="wf-" + secrets.token_hex(8))
    started = time.monotonic()
    text: list[str] = []
    finish, usage, deployment, status = "", Usage(), "", "OK"
    try:
        routed = ctx.services.router().stream(request, ctx.deadline)
        async with contextlib.aclosing(routed.chunks()) as chunks:
            async for chunk in chunks:
                deployment = routed.deployment or deployment
                if chunk.delta:
                    text.append(chunk.delta)
                    if stream:
                        ctx.emit(chunk.delta)
                if chunk.finish_reason:
                    finish = chunk.finish_reason
                if chunk.usage is not None:
                    usage = chunk.usage
    except RouterError as exc:
        status = str(exc.kind).upper() if hasattr(exc, "kind") else "ERROR"
        raise
    except BaseException:
        status = "CANCELLED"
        raise
    finally:
        ctx.used(ModelUse(
            ctx.node.id, model, deployment, usage.input_tokens, usage.output_tokens,
            int((time.monotonic() - started) * 1000), status, usage.cached_input_tokens,
        ))  # fmt: skip
    return "".join(text), finish, usage


_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


def schema_problems(node: Node, key: str) -> list[Problem]:
    """`config.<key>` as a JSON Schema: valid, and with local `$ref`s only."""
    schema = node.config.get(key)
    if not isinstance(schema, Mapping):
        return []  # absent, or the config's own schema says what is wrong
    field = f"config.{key}"
    problems = [
        Problem(node.id, f, f"must be a local reference (#...), got {ref!r}: a schema may not "
                "name another document")
        for f, ref in _remote_refs(schema, field)
    ]  # fmt: skip
    dialect = schema.get("$schema")
    if dialect is not None and not isinstance(dialect, str):
        problems.append(Problem(node.id, f"{field}.$schema", "must be a string (a dialect URI)"))
        return problems
    try:
        validator(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        problems.append(Problem(node.id, field, f"not a valid JSON Schema: {exc.message}"))
    return problems


def _remote_refs(value: Any, field: str) -> Iterator[tuple[str, str]]:
    """(field path, reference) for each `$ref` in `value` that is not `#...`."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            path = f"{field}.{k}"
            if k in _REF_KEYWORDS and isinstance(v, str) and not v.startswith("#"):
                yield path, v
            yield from _remote_refs(v, path)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _remote_refs(v, f"{field}[{i}]")


def validator(schema: Mapping[str, Any]) -> type[jsonschema.protocols.Validator]:
    """The validator class of `schema`'s dialect (the latest for an unknown one)."""
    cls: type[jsonschema.protocols.Validator] = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    return cls


def parse_json(text: str, schema: Mapping[str, Any]) -> Any:
    """The reply parsed and checked against `schema`; NodeFailed saying why not."""
    body = text.strip()
    if body.startswith("```"):  # a fenced block: take what is inside
        body = body.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise NodeFailed(f"the model's reply is not JSON: {exc}") from None
    try:
        # an empty registry: `$ref`s resolve within the schema, never by fetching a URL
        checker = validator(schema)(schema, registry=referencing.Registry())
        error = jsonschema.exceptions.best_match(checker.iter_errors(value))
    except referencing.exceptions.Unresolvable as exc:
        raise NodeFailed(f"the schema has a reference that does not resolve: {exc}") from None
    except (jsonschema.SchemaError, re.error, TypeError, ValueError, RecursionError) as exc:
        raise NodeFailed(f"the schema cannot be checked: {exc}") from None
    if error is not None:
        path = "/".join(map(str, error.absolute_path)) or "(root)"
        raise NodeFailed(f"the model's reply does not match the schema at {path}: {error.message}")
    return value
