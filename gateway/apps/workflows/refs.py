"""Variable references: `{{ node_id.field }}` in Jinja2, resolved by the engine.

Every string in a node's config is a template over the outputs of the nodes
upstream of it (`{{ search.top_score }}`, `{{ start.question | upper }}`). A
string that is exactly one expression (`"{{ search.chunks }}"`) resolves to
the value itself, not its text, so a list stays a list. The sandbox is the
one app prompts use: no attribute tricks that reach Python internals; and it
is immutable: a template cannot change the values it reads (`.append`,
`.update`, `.pop` are refused), which other nodes and the cached definition
share.

Templates run on the event loop, so each render is bounded: `*`, `+`, `%`
and the filters and string methods that pad or repeat refuse a result of more
than MAX_SIZE characters (or items), `**` and integer `*` one of more than
MAX_BITS bits, the rendered text (and every `{% set %}` block, macro and `~`)
is at most MAX_SIZE characters, and loop iterations plus calls are at most
MAX_STEPS per render. Each refusal is a TemplateError.

`references()` reads a template's syntax tree and names each (node, field) it
reads, so a workflow is checked when saved, not when it first runs.
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gateway.errors import InvalidArgument

MAX_SIZE = 1_000_000  # characters of rendered text; characters or items one operation may make
MAX_BITS = 10_000  # bits of an integer `**` or `*` may make
MAX_STEPS = 250_000  # loop iterations and calls in one render
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_STEPS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("steps", default=None)


def _limit(size: int, what: str) -> None:
    if size > MAX_SIZE:
        raise SecurityError(
            f"{what} would make {size:,} characters or items (at most {MAX_SIZE:,})"
        )


def _size(value: Any, budget: int = MAX_SIZE) -> int:
    """About how big `value` is as text: a string's length, a container's items
    counted through (each at least 1); stops counting once past `budget`."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, Mapping):
        items: Iterable[Any] = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return 1
    total = 0
    for item in items:
        total += max(1, _size(item, budget - total))
        if total > budget:
            break
    return total


def _check_mul(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        bits = abs(left).bit_length() + abs(right).bit_length()
        if bits > MAX_BITS:
            raise SecurityError(f"'*' would make a {bits:,}-bit number (at most {MAX_BITS:,})")
        return
    for seq, n in ((left, right), (right, left)):
        if isinstance(seq, str | bytes | list | tuple) and isinstance(n, int) and n > 0:
            _limit(_size(seq, MAX_SIZE // n + 1) * n, "'*'")


def _check_pow(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        bits = exponent * math.log2(abs(base))
        if bits > MAX_BITS:
            raise SecurityError(f"'**' would make a {bits:,.0f}-bit number (at most {MAX_BITS:,})")


def _check_add(left: Any, right: Any) -> None:
    if isinstance(left, str | bytes | list | tuple) and isinstance(
        right, str | bytes | list | tuple
    ):
        first = _size(left)
        _limit(first + _size(right, MAX_SIZE - first + 1), "'+'")


def _check_percent(fmt: Any, args: Any) -> None:
    """`fmt % args` (and the `format` filter): no width or precision past MAX_SIZE."""
    if not isinstance(fmt, str):
        return
    given = (
        args.values() if isinstance(args, Mapping) else args if isinstance(args, tuple) else (args,)
    )
    for m in _PERCENT.finditer(fmt):
        for part in m.groups():
            if part == "*":
                for value in given:
                    if isinstance(value, int):
                        _limit(abs(value), "'%'")
            elif part is not None:
                _limit(int(part) if len(part) <= 9 else MAX_SIZE + 1, "'%'")


def _check_str_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """`fmt.format(...)`: no width or precision past MAX_SIZE, literal or nested."""
    given = [*args, *kwargs.values()]
    if len(args) == 1 and isinstance(args[0], Mapping):  # format_map
        given += list(args[0].values())
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if not spec:
            continue
        for digits in re.findall(r"\d+", spec):
            _limit(int(digits) if len(digits) <= 9 else MAX_SIZE + 1, "format")
        if "{" in spec:
            for value in given:
                if isinstance(value, int):
                    _limit(abs(value), "format")


def _joined(sep: Any, items: Any) -> int:
    if isinstance(items, str):
        return len(items) * (1 + len(str(sep)))
    if isinstance(items, list | tuple):
        return _size(items) + len(str(sep)) * max(0, len(items) - 1)
    return 0  # an iterator: not counted (reading it would use it up)


def _replaced(s: str, old: Any, new: Any, count: Any) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(s)
    n = s.count(old)
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    return len(s) + n * (len(new) - len(old))


def _check_str_method(owner: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill"):
        width = first if args else kwargs.get("width")
        if isinstance(width, int):
            _limit(width, f"str.{name}")
    elif name == "expandtabs":
        tabs = first if args else kwargs.get("tabsize", 8)
        if isinstance(tabs, int):
            _limit(len(owner) + owner.count("\t") * tabs, "str.expandtabs")
    elif name == "join" and args:
        _limit(_joined(owner, first), "str.join")
    elif name == "replace" and len(args) >= 2:
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        _limit(_replaced(owner, args[0], args[1], count), "str.replace")


def _filter_checks() -> dict[str, Callable[..., None]]:
    """Pre-checks for the filters that can make much more than they are given
    (their arguments as the template passes them, after the value)."""

    def center(value: Any, width: Any = 80, *_: Any, **__: Any) -> None:
        if isinstance(width, int):
            _limit(width, "center")

    def indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
        w = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        text_ = str(s)
        _limit(len(text_) + (text_.count("\n") + 1) * w, "indent")

    def format_(value: Any, *args: Any, **kwargs: Any) -> None:
        _check_percent(str(value), kwargs or args)

    def join(value: Any, d: Any = "", *_: Any, **__: Any) -> None:
        _limit(_joined(d, value), "join")

    def replace(s: Any, old: Any, new: Any, count: Any = None, *_: Any, **__: Any) -> None:
        _limit(_replaced(str(s), old, new, count), "replace")

    def batch(value: Any, linecount: Any, fill_with: Any = None, *_: Any, **__: Any) -> None:
        if fill_with is not None and isinstance(linecount, int):
            _limit(linecount, "batch")

    def wordwrap(s: Any, width: Any = 79, *args: Any, **kwargs: Any) -> None:
        wrap = kwargs.get("wrapstring", args[1] if len(args) > 1 else None)
        if isinstance(wrap, str) and isinstance(width, int):
            text_ = str(s)
            lines = text_.count(" ") + text_.count("\n") + len(text_) // max(width, 1) + 1
            _limit(len(text_) + lines * len(wrap), "wordwrap")

    return {
        "center": center, "indent": indent, "format": format_, "join": join,
        "replace": replace, "batch": batch, "wordwrap": wordwrap,
    }  # fmt: skip


def _guarded(original: Callable[..., Any], check: Callable[..., None]) -> Callable[..., Any]:
    skip = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0  # eval context

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        check(*args[skip:], **kwargs)
        return original(*args, **kwargs)

    return guarded


def _concat(parts: Iterable[Any]) -> str:
    """Every join of rendered text (the whole template, `{% set %}` blocks,
    macros, `~`), refused past MAX_SIZE characters as it grows."""
    found: list[str] = []
    size = 0
    for part in parts:
        size += len(part)
        if size > MAX_SIZE:
            raise SecurityError(f"the rendered text is longer than {MAX_SIZE:,} characters")
        found.append(part)
    return "".join(found)


def _finalize(value: Any) -> Any:
    """A `{{ value }}` in text: a container must not print past MAX_SIZE."""
    if isinstance(value, Mapping | list | tuple):
        _limit(_size(value), "printing a value")
    return value


def _charge() -> None:
    """One step of the render's budget (none outside `render` and `evaluate`)."""
    left = _STEPS.get()
    if left is not None:
        left[0] -= 1
        if left[0] < 0:
            raise SecurityError(f"more than {MAX_STEPS:,} loop iterations and calls")


_BINOP_CHECKS: dict[str, Callable[[Any, Any], None]] = {
    "*": _check_mul, "**": _check_pow, "+": _check_add, "%": _check_percent,
}  # fmt: skip


class _CodeGenerator(CodeGenerator):
    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        """Iterates through `environment.iterate`: each item costs one step."""
        it = node.iter
        if not (isinstance(it, nodes.Call) and isinstance(it.node, nodes.EnvironmentAttribute)):
            node.iter = nodes.Call(
                nodes.EnvironmentAttribute("iterate", lineno=it.lineno), [it], [], None, None,
                lineno=it.lineno,
            )  # fmt: skip
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat(map(str, (")  # as `str_join`, but bounded
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


class _Sandbox(ImmutableSandboxedEnvironment):
    """Refuses an unsafe attribute outright: the stock sandbox hands back an
    Undefined that renders as "" (or None, for a lone expression), so
    `{{ ''.__class__ }}` would pass silently instead of failing. Immutable:
    the methods that change a list, dict or set are unsafe attributes."""

    code_generator_class = _CodeGenerator
    concat = staticmethod(_concat)
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_finalize, **options)
        for name, check in _filter_checks().items():
            self.filters[name] = _guarded(self.filters[name], check)
        del self.globals["lipsum"]  # n paragraphs of lorem ipsum: unbounded, and of no use here

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

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _BINOP_CHECKS[operator](left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _charge()
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str) and isinstance(getattr(obj, "__name__", None), str):
            _check_str_method(owner, obj.__name__, args, kwargs)
        if isinstance(obj, LoopContext) and args:  # a recursive loop's next level
            args = (self.iterate(args[0]), *args[1:])
        return super().call(context, obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_str_format(fmt, args, kwargs)
            return wrapped(*args, **kwargs)

        return functools.update_wrapper(checked, wrapped)

    @staticmethod
    def iterate(iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _charge()
            yield item


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
    token = _STEPS.set([MAX_STEPS])
    try:
        expr = _whole(source)
        if expr is not None:
            return _expression(expr)(**scope)
        return _template(source).render(**scope)
    except TemplateError:
        raise
    except jinja2.TemplateError as exc:  # the sandbox's SecurityError is one
        raise TemplateError(f"cannot render: {exc}") from None
    except (
        TypeError, ValueError, ArithmeticError, LookupError, AttributeError, RecursionError,
    ) as exc:  # fmt: skip
        raise TemplateError(f"cannot render: {type(exc).__name__}: {exc}") from None
    finally:
        _STEPS.reset(token)


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
    token = _STEPS.set([MAX_STEPS])
    try:
        return _expression(expression)(**scope)
    except TemplateError:
        raise
    except (
        jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError, RecursionError,
    ) as exc:  # fmt: skip
        raise TemplateError(f"cannot render: {type(exc).__name__}: {exc}") from None
    finally:
        _STEPS.reset(token)
