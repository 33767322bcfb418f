"""Between HTTP requests/responses and protobuf messages (proto3 JSON mapping).

Path variables, then the body (per the binding's `body`), then query
parameters for the fields neither covers (`a.b=1` for nested fields, a
repeated field by repeating the parameter). Names may be lowerCamelCase or
the proto's own; answers use lowerCamelCase.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.rest.bindings import Binding

_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)


MAX_JSON_DEPTH = 64  # objects and arrays inside one another, in any request body


class BadRequest(ValueError):
    """The HTTP request cannot become the RPC's request message."""


def parse_json(raw: bytes, what: str = "request body") -> Any:
    """The JSON value of `raw`, or BadRequest: malformed JSON, nesting past
    MAX_JSON_DEPTH, a number that is not finite (NaN, Infinity, 1e999) or has
    more digits than Python reads, a string that is not Unicode (a lone
    surrogate escape). Checked here, before any call is made for the request."""
    try:
        # What json.loads does with bytes, without building a decoder per call.
        value = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except RecursionError:
        raise BadRequest(_too_deep(what)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"{what}: malformed JSON ({exc})") from exc
    except ValueError as exc:  # from the hooks, or int()'s digit limit
        raise BadRequest(f"{what}: {exc}") from exc
    if _may_be_hostile(raw):
        _check_tree(value, what)
    return value


def _may_be_hostile(raw: bytes) -> bool:
    """False when the bytes alone rule out what _check_tree looks for (the
    usual body): fewer brackets than the depth limit, no `\\u` escape and no
    0xED byte, through which a surrogate arrives (json reads bytes with
    surrogatepass), and no NUL byte (UTF-16 and UTF-32 bodies have them, and
    their escapes are spelled in other bytes)."""
    brackets = raw.count(b"[") + raw.count(b"{")
    return brackets > MAX_JSON_DEPTH or any(b in raw for b in (b"\\u", b"\xed", b"\x00"))


def _not_finite(literal: str) -> Any:
    raise ValueError(f"{literal} is not a finite number")


def _finite(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError(f"{literal} is not a finite number")
    return number


def _integer(literal: str) -> int:
    # Past 308 digits no float holds it: protobuf's conversions would overflow.
    if len(literal.lstrip("-")) > 308:
        raise ValueError(f"an integer of {len(literal)} digits is out of range")
    return int(literal)


_DECODER = json.JSONDecoder(parse_constant=_not_finite, parse_float=_finite, parse_int=_integer)


def _too_deep(what: str) -> str:
    return f"{what}: nested deeper than {MAX_JSON_DEPTH} levels of objects and arrays"


def _check_tree(value: Any, what: str) -> None:
    """Depth and strings, without recursion (a deep tree must not exhaust the stack)."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    raise BadRequest(f"{what}: a string holds a lone surrogate") from None
            continue
        if isinstance(item, dict):
            children: Iterable[Any] = (*item, *item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth == MAX_JSON_DEPTH:
            raise BadRequest(_too_deep(what))
        pending.extend((child, depth + 1) for child in children)


def _field(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    return descriptor.fields_by_name.get(name) or descriptor.fields_by_camelcase_name.get(name)


def _resolve(descriptor: Any, path: str) -> list[FieldDescriptor]:
    """The fields along a dotted path; BadRequest names a missing one."""
    fields: list[FieldDescriptor] = []
    owner: Descriptor | None = descriptor
    for part in path.split("."):
        found = _field(owner, part) if owner is not None else None
        if found is None:
            raise BadRequest(f"{path}: no such field in {descriptor.full_name}")
        fields.append(found)
        owner = found.message_type
    return fields


def _scalar(field: FieldDescriptor, value: str, name: str) -> Any:
    """A query/path string as the JSON value json_format expects for `field`."""
    if field.type == FieldDescriptor.TYPE_BOOL:
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise BadRequest(f"{name}: not a boolean: {value!r}")
    if field.type in _FLOATS:
        try:
            return float(value)
        except ValueError:
            raise BadRequest(f"{name}: not a number: {value!r}") from None
    return value


def _put(tree: dict[str, Any], fields: list[FieldDescriptor], value: Any) -> None:
    for field in fields[:-1]:
        tree = tree.setdefault(field.name, {})
        if not isinstance(tree, dict):
            raise BadRequest(f"{field.name}: set both as a value and as a message")
    tree[fields[-1].name] = value


def parse_message(tree: Any, message: Message, what: str) -> None:
    try:
        json_format.ParseDict(tree, message)
    except (json_format.ParseError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise BadRequest(f"{what}: {exc}{_enum_values(str(exc))}") from exc
    except RecursionError:
        raise BadRequest(f"{what}: nested too deeply") from None


_BAD_ENUM = re.compile(r"Invalid enum value .+? for enum type (\S+?) ")


def _enum_values(error: str) -> str:
    """For an unknown enum value: the names that would do."""
    match = _BAD_ENUM.search(error)
    if match is None:
        return ""
    try:
        enum = descriptor_pool.Default().FindEnumTypeByName(match.group(1))
    except KeyError:
        return ""
    names = [v.name for v in enum.values if v.number != 0]  # 0: "unspecified"
    return f" (valid values: {', '.join(names)})"


def _misplaced(binding: Binding, descriptor: Any, body_field: str, body: Any) -> None:
    """A body that is one field of the request (`CreateCollection`'s is the
    collection) may carry the request's other fields by mistake: say where
    they go instead of "no field named"."""
    if not isinstance(body, dict):
        return
    inner = _field(descriptor, body_field)
    inside = inner.message_type if inner is not None else None
    for key in body:
        if inside is not None and _field(inside, key) is not None:
            continue
        if (field := _field(descriptor, key)) is not None and field.name != body_field:
            route = f"{binding.http_method} {binding.template.text}"
            where = "path" if field.name in binding.template.variables else "query string"
            example = "" if where == "path" else f"?{field.name}=..."
            raise BadRequest(
                f"request body: {key} is not a field of the {body_field}; "
                f"it goes in the {where} ({route}{example})"
            )


def decode(
    binding: Binding,
    variables: dict[str, str],
    body: Any,
    query: Iterable[tuple[str, str]],
    body_field: str | None = None,
) -> Message:
    """The request message. `body` is the parsed JSON body (None: none sent);
    `body_field` overrides the binding's `body` (a raw upload reads its
    header from the query instead)."""
    message: Message = binding.request_class()
    descriptor = message.DESCRIPTOR
    covered: set[str] = set()
    body_field = binding.body if body_field is None else body_field
    if body_field == "*":
        if body is not None:
            if not isinstance(body, dict):
                raise BadRequest("request body: must be a JSON object")
            parse_message(body, message, "request body")
        covered.add("*")
    elif body_field:
        if body is not None:
            _misplaced(binding, descriptor, body_field, body)
            parse_message({body_field: body}, message, f"request body ({body_field})")
        covered.add(body_field)
    tree: dict[str, Any] = {}
    for name, value in variables.items():
        fields = _resolve(descriptor, name)
        _put(tree, fields, _scalar(fields[-1], value, name))
    if "*" not in covered:
        repeated: dict[str, list[Any]] = {}
        for name, value in query:
            fields = _resolve(descriptor, name)
            if fields[0].name in covered:
                raise BadRequest(f"{name}: already in the request body")
            leaf = fields[-1]
            if leaf.message_type is not None and not leaf.message_type.full_name.startswith(
                "google.protobuf."
            ):
                raise BadRequest(f"{name}: a message field; set its fields ({name}.x=...)")
            converted = _scalar(leaf, value, name)
            if leaf.is_repeated:
                key = ".".join(f.name for f in fields)
                repeated.setdefault(key, []).append(converted)
                _put(tree, fields, repeated[key])
            else:
                _put(tree, fields, converted)
    if tree:
        parse_message(tree, message, "path or query parameter")
    return message


def encode(message: Message, response_body: str = "") -> Any:
    """The JSON value of a response (or of its `response_body` field)."""
    if response_body:
        value = getattr(message, response_body)
        if isinstance(value, Message):
            return json_format.MessageToDict(value)
        dumped = json_format.MessageToDict(message)
        return dumped.get(message.DESCRIPTOR.fields_by_name[response_body].json_name)
    return json_format.MessageToDict(message)
