"""`expression`: transform data with a CEL expression over upstream outputs.

    expression: 'search.chunks.filter(c, c.score > 0.5).map(c, c.text)'

CEL (the Common Expression Language) has no loops, I/O or side effects: only
the core functions and the macros (map, filter, all, exists, exists_one), over
the outputs of the upstream nodes, each by its node id. The expression is
compiled when the workflow is saved: a syntax error, or a variable no upstream
node produces, is reported then. `value` holds the result as JSON (bytes as
UTF-8 text or else base64, timestamps in ISO 8601, durations in seconds).
"""

from __future__ import annotations

import base64
import datetime
import functools
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import cel
import jinja2

from gateway.apps.workflows.document import Node, Problem
from gateway.apps.workflows.nodes.base import NodeContext, NodeFailed, NodeType, Outcome, Shape

# Names `Program.variables()` lists that are CEL's own: type names, the optional namespace.
BUILTINS = frozenset({
    "bool", "bytes", "double", "dyn", "int", "list", "map", "null_type", "optional", "string",
    "type", "uint",
})  # fmt: skip
_STRINGS = re.compile(
    r"""[rRbB]{0,2}("{3}[\s\S]*?"{3}|'{3}[\s\S]*?'{3}|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')"""
)
_BINDER = re.compile(
    r"\.\s*(?:all|exists|exists_one|existsOne|map|filter)\s*\(\s*([_A-Za-z][_A-Za-z0-9]*)\s*,"
)
_FIELD = r"(?<![\w.]){}\s*\.\s*([_A-Za-z][_A-Za-z0-9]*)(?!\s*\()"


class Expression(NodeType):
    name = "expression"
    description = "Compute a value with a CEL expression over upstream outputs (sandboxed)."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["expression"],
        "properties": {
            "expression": {
                "type": "string", "minLength": 1, "maxLength": 8192,
                "description": "CEL, e.g. search.chunks.map(c, c.text)",
            },
        },
    }  # fmt: skip
    outputs: ClassVar[dict[str, str]] = {"value": "any"}
    literal_fields = frozenset({"expression"})

    def check(self, node: Node, shape: Shape) -> list[Problem]:
        source = node.config.get("expression")
        if not isinstance(source, str):
            return []  # the schema says so
        try:
            program = _compile(source)
        except ValueError as exc:
            return [Problem(node.id, "config.expression", str(exc))]
        code = _STRINGS.sub('""', source)
        bound = set(_BINDER.findall(code))
        problems = []
        for name in program.variables():
            if name in BUILTINS or name in bound:
                continue
            fields = shape.outputs.get(name)
            if fields is None:
                problems.append(Problem(
                    node.id, "config.expression",
                    f"reads {name}, but no node upstream of this node is called {name!r}",
                ))  # fmt: skip
                continue
            if "*" in fields:
                continue
            for attr in dict.fromkeys(re.findall(_FIELD.format(re.escape(name)), code)):
                if attr not in fields:
                    have = ", ".join(sorted(fields))
                    problems.append(Problem(
                        node.id, "config.expression",
                        f"{name} ({shape.types.get(name, '?')}) has no output {attr!r} "
                        f"(it has: {have})",
                    ))  # fmt: skip
        return problems

    async def run(self, ctx: NodeContext) -> Outcome:
        try:
            program = _compile(ctx.node.config["expression"])
        except ValueError as exc:
            raise NodeFailed(f"expression: {exc}") from None
        variables = {n: _plain(ctx.scope[n]) for n in program.variables() if n in ctx.scope}
        try:
            value = program.execute(variables)
        except KeyError as exc:
            raise NodeFailed(f"expression: no such key {exc}") from None
        except Exception as exc:  # the extension raises TypeError, ValueError, RuntimeError, ...
            raise NodeFailed(f"expression: {exc}") from None
        return Outcome({"value": _json(value)})


@functools.lru_cache(maxsize=1024)
def _compile(source: str) -> cel.Program:
    """The compiled program; ValueError for a syntax error."""
    return cel.compile(source)


def _plain(value: Any) -> Any:
    """An output as CEL takes it: dicts, lists and scalars."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, jinja2.Undefined):
        return None
    return value


def _json(value: Any) -> Any:
    """A CEL result as JSON values."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {_key(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, cel.OptionalValue):
        return _json(value.value()) if value.has_value() else None
    return str(value)


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return key if isinstance(key, str) else str(key)
