"""Variable references: `{{ node_id.field }}` in Jinja2, resolved by the engine.

Every string in a node's config is a template over the outputs of the nodes
upstream of it (`{{ search.top_score }}`, `{{ start.question | upper }}`). A
string that is exactly one expression (`"{{ search.chunks }}"`) resolves to
the value itself, not its text, so a list stays a list. The sandbox is the
one app prompts use: no attribute tricks that reach Python internals.

`references()` reads a template's syntax tree and names each (node, field) it
reads, so a workflow is checked when saved, not when it first runs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from gateway.errors import InvalidArgument


class _Sandbox(SandboxedEnvironment):
    """Refuses an unsafe attribute outright: the stock sandbox hands back an
    Undefined that renders as "" (or None, for a lone expression), so
    `{{ ''.__class__ }}` would pass silently instead of failing."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`{{ start.items }}` is the output called `items`, not dict.items:
        a mapping's keys come before its methods."""
        if isinstance(obj, Mapping) and isinstance(attribute, str) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe."
        )


_ENV = _Sandbox(autoescape=False, keep_trailing_newline=True, undefined=jinja2.ChainableUndefined)
_WHOLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


class TemplateError(ValueError):
    """A template that does not compile or cannot render."""


@functools.lru_cache(maxsize=4096)
def _template(source: str) -> jinja2.Template:
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}") from None


@functools.lru_cache(maxsize=4096)
def _expression(source: str) -> Any:
    try:
        return _ENV.compile_expression(source, undefined_to_none=True)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error") from None


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def _whole(source: str) -> str | None:
    """The expression when `source` is exactly one `{{ ... }}`."""
    m = _WHOLE.match(source)
    if m is None or "{{" in m.group(1) or "}}" in m.group(1) or "{%" in source:
        return None
    return m.group(1).strip()


@functools.lru_cache(maxsize=4096)
def references(source: str) -> tuple[tuple[str, str | None], ...]:
    """(node id, field or None) for each variable `source` reads; raises
    TemplateError when it does not compile."""
    if not is_template(source):
        return ()
    _template(source)  # the syntax error, worded as Jinja words it
    tree = _ENV.parse(source)
    free = meta.find_undeclared_variables(tree)
    found: dict[tuple[str, str | None], None] = {}
    attributed: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        root = node.node
        if isinstance(root, nodes.Name) and root.name in free:
            field = node.attr if isinstance(node, nodes.Getattr) else _const(node.arg)
            found[(root.name, field)] = None
            attributed.add(id(root))
    for name in tree.find_all(nodes.Name):
        if name.name in free and id(name) not in attributed and name.ctx == "load":
            found[(name.name, None)] = None
    return tuple(found)


def _const(arg: nodes.Node) -> str | None:
    return arg.value if isinstance(arg, nodes.Const) and isinstance(arg.value, str) else None


def render(source: str, scope: Mapping[str, Any]) -> Any:
    """The value of `source` over `scope` (node id -> outputs): the value itself
    for a lone `{{ expression }}`, else the rendered text; a string without
    `{{` or `{%` is returned as it is."""
    if not is_template(source):
        return source
    try:
        expr = _whole(source)
        if expr is not None:
            return _expression(expr)(**scope)
        return _template(source).render(**scope)
    except TemplateError:
        raise
    except jinja2.TemplateError as exc:  # the sandbox's SecurityError is one
        raise TemplateError(f"cannot render: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise TemplateError(f"cannot render: {type(exc).__name__}: {exc}") from None


def resolve(value: Any, scope: Mapping[str, Any], field: str = "config") -> Any:
    """`value` with every string in it rendered (dicts and lists walked);
    InvalidArgument naming the field when one cannot render."""
    if isinstance(value, str):
        try:
            return render(value, scope)
        except TemplateError as exc:
            raise InvalidArgument(field, str(exc)) from None
    if isinstance(value, Mapping):
        return {k: resolve(v, scope, f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, scope, f"{field}[{i}]") for i, v in enumerate(value)]
    return value


def strings(value: Any, field: str) -> Iterator[tuple[str, str]]:
    """(field path, string) for every string inside `value`."""
    if isinstance(value, str):
        yield field, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from strings(v, f"{field}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from strings(v, f"{field}[{i}]")


def text(value: Any) -> str:
    """A resolved value as text (None -> "")."""
    if value is None or isinstance(value, jinja2.Undefined):
        return ""
    return value if isinstance(value, str) else str(value)


def segments(source: str) -> list[tuple[str, str]] | None:
    """`source` split into ("text", literal) and ("expr", expression) parts, or
    None when it uses `{% %}` blocks (then it renders whole)."""
    if "{%" in source or "{#" in source:
        return None
    parts: list[tuple[str, str]] = []
    pos = 0
    for m in re.finditer(r"\{\{(.*?)\}\}", source, re.DOTALL):
        if m.start() > pos:
            parts.append(("text", source[pos : m.start()]))
        parts.append(("expr", m.group(1).strip()))
        pos = m.end()
    if pos < len(source):
        parts.append(("text", source[pos:]))
    return parts


def evaluate(expression: str, scope: Mapping[str, Any]) -> Any:
    try:
        return _expression(expression)(**scope)
    except TemplateError:
        raise
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(f"cannot render: {type(exc).__name__}: {exc}") from None
