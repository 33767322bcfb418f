"""`expression`: transform data with a CEL expression over upstream outputs.

    expression: 'search.chunks.filter(c, c.score > 0.5).map(c, c.text)'

CEL (the Common Expression Language) has no loops, I/O or side effects: only
the core functions and the macros (map, filter, all, exists, exists_one), over
the outputs of the upstream nodes, each by its node id. The expression is
compiled when the workflow is saved: a syntax error, or a variable no upstream
node produces, is reported then. `value` holds the result as JSON (bytes as
UTF-8 text or else base64, timestamps in ISO 8601, durations in seconds).

Bounds. The CEL engine has no step or time budget of its own, holds the GIL
and runs on the event loop, and its `map` and `filter` copy the list they
build at every item (a macro over n items costs about n^2, a macro nested in
another n^3). So: an expression is at most MAX_LENGTH characters, nests macros
at most MAX_NESTING deep (`a.map(x, b.map(y, ...))` is 2), and reads at most
MAX_VALUES[depth] values (every list item and map entry, counted through:
a million without macros, 5,000 with, 200 with nested ones); more fails the
node. That bounds what a run's inputs can make an expression cost (under
about a second), not what its author can: list concatenation (`a + a + a`)
still multiplies the work, within the length limit.
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
_MACRO_OR_PAREN = re.compile(r"\.\s*(?:all|exists|exists_one|existsOne|map|filter)\s*\(|[()]")
MAX_LENGTH = 8192  # characters of an expression
MAX_NESTING = 2  # macros within macros
# values an expression may read (list items and map entries, through), by how deep its
# macros nest: none, one (a `map` over 5,000 items: ~0.6-0.9 s), two (200^3 steps: ~0.5 s)
MAX_VALUES = (1_000_000, 5_000, 200)


class Expression(NodeType):
    name = "expression"
    description = "Compute a value with a CEL expression over upstream outputs (sandboxed)."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["expression"],
        "properties": {
            "expression": {
                "type": "string", "minLength": 1, "maxLength": MAX_LENGTH,
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
        depth = _nesting(code)
        if depth > MAX_NESTING:
            return [Problem(
                node.id, "config.expression",
                f"nests macros {depth} deep (at most {MAX_NESTING}): each level multiplies "
                "the work by the size of a list",
            )]  # fmt: skip
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
        source = ctx.node.config["expression"]
        if len(source) > MAX_LENGTH:
            raise NodeFailed(f"expression: longer than {MAX_LENGTH} characters")
        try:
            program = _compile(source)
        except ValueError as exc:
            raise NodeFailed(f"expression: {exc}") from None
        depth = _nesting(_STRINGS.sub('""', source))
        if depth > MAX_NESTING:
            raise NodeFailed(f"expression: nests macros {depth} deep (at most {MAX_NESTING})")
        variables = {n: _plain(ctx.scope[n]) for n in program.variables() if n in ctx.scope}
        most = MAX_VALUES[depth]
        if _count(variables, most) > most:
            raise NodeFailed(
                f"expression: its inputs hold more than {most:,} values (list items and map "
                f"entries), the most for an expression whose macros nest {depth} deep"
            )
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


def _nesting(code: str) -> int:
    """How deep macros nest in `code` (CEL with its strings blanked)."""
    stack: list[bool] = []  # per open parenthesis: whether it is a macro's
    depth = deepest = 0
    for m in _MACRO_OR_PAREN.finditer(code):
        if m.group(0) == ")":
            if stack and stack.pop():
                depth -= 1
        elif m.group(0) == "(":
            stack.append(False)
        else:
            stack.append(True)
            depth += 1
            deepest = max(deepest, depth)
    return deepest


def _count(variables: Mapping[str, Any], most: int) -> int:
    """The values in `variables` (each list item and map entry, counted
    through); stops once past `most`."""
    found = 0
    todo: list[Any] = list(variables.values())
    while todo and found <= most:
        value = todo.pop()
        if isinstance(value, Mapping | list | tuple):
            found += len(value)
            if found <= most:
                todo.extend(value.values() if isinstance(value, Mapping) else value)
    return found


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
