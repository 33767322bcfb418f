"""`if_else`: the first case whose conditions hold names the branch; else "else".

    cases:
      - label: confident
        match: all            # or any
        conditions:
          - {variable: "{{ search.top_score }}", operator: ge, value: 0.5}
          - {variable: "{{ search.count }}", operator: not_empty}

Operators: eq ne gt ge lt le (numbers or strings), contains not_contains (a
string's substring, a list's element), starts_with ends_with, empty not_empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import jinja2

from gateway.apps.workflows import refs
from gateway.apps.workflows.document import Node, Problem
from gateway.apps.workflows.nodes.base import NodeContext, NodeFailed, NodeType, Outcome, Shape

COMPARE = ("eq", "ne", "gt", "ge", "lt", "le")
ORDERED = ("gt", "ge", "lt", "le")
UNARY = ("empty", "not_empty")
OPERATORS = (*COMPARE, "contains", "not_contains", "starts_with", "ends_with", *UNARY)
ELSE = "else"


class IfElse(NodeType):
    name = "if_else"
    description = "Branch on conditions over variables: the first case that holds, else `else`."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["cases"],
        "properties": {
            "cases": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["label", "conditions"],
                    "properties": {
                        "label": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                        "match": {"enum": ["all", "any"], "default": "all"},
                        "conditions": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["variable", "operator"],
                                "properties": {
                                    "variable": {"type": "string"},
                                    "operator": {"enum": list(OPERATORS)},
                                    "value": {},
                                },
                            },
                        },
                    },
                },
            }
        },
    }
    outputs: ClassVar[dict[str, str]] = {"branch": "string"}
    literal_fields = frozenset({"cases"})  # only `variable` is a template: checked below

    def branches(self, node: Node) -> tuple[str, ...]:
        return (*(label for _, label in _labels(node)), ELSE)

    def check(self, node: Node, shape: Shape) -> list[Problem]:
        """Duplicate labels, missing values, ordering on non-numbers; a malformed
        config (its schema problems say so) yields no problems here, and no error."""
        problems = []
        seen: set[str] = set()
        for i, label in _labels(node):
            if label == ELSE or label in seen:
                why = "is the default branch" if label == ELSE else "is used twice"
                problems.append(Problem(node.id, f"config.cases[{i}].label", f"{label!r} {why}"))
            seen.add(label)
        for i, j, cond in _conditions(node):
            f = f"config.cases[{i}].conditions[{j}]"
            operator, variable = cond.get("operator"), cond.get("variable")
            if operator not in UNARY and "value" not in cond:
                problems.append(Problem(node.id, f"{f}.value", "is required"))
            if operator in ORDERED and isinstance(variable, str):
                try:
                    found = refs.references(variable)
                except refs.TemplateError:
                    continue  # reported with the templates
                for ref_node, field in found:
                    kind = shape.outputs.get(ref_node, {}).get(field or "", "any")
                    if kind not in ("any", "number", "integer", "string"):
                        problems.append(Problem(
                            node.id, f"{f}.variable",
                            f"{operator} compares numbers, but {ref_node}.{field} is {kind}",
                        ))  # fmt: skip
        return problems

    def templates(self, node: Node) -> list[tuple[str, str]]:
        return [
            (f"config.cases[{i}].conditions[{j}].variable", cond["variable"])
            for i, j, cond in _conditions(node)
            if isinstance(cond.get("variable"), str)
        ]

    async def run(self, ctx: NodeContext) -> Outcome:
        for i, case in enumerate(ctx.node.config["cases"]):
            results = []
            for j, cond in enumerate(case["conditions"]):
                value = refs.resolve(
                    cond["variable"], ctx.scope, f"config.cases[{i}].conditions[{j}].variable"
                )
                results.append(holds(cond["operator"], value, cond.get("value")))
            if (any if case.get("match") == "any" else all)(results):
                return Outcome({"branch": case["label"]}, branch=case["label"])
        return Outcome({"branch": ELSE}, branch=ELSE)


def _cases(node: Node) -> list[tuple[int, Mapping[str, Any]]]:
    """(index, case) for each case that is an object; none when `cases` is not a list."""
    cases = node.config.get("cases")
    if not isinstance(cases, list | tuple):
        return []
    return [(i, case) for i, case in enumerate(cases) if isinstance(case, Mapping)]


def _labels(node: Node) -> list[tuple[int, str]]:
    return [(i, c["label"]) for i, c in _cases(node) if isinstance(c.get("label"), str)]


def _conditions(node: Node) -> list[tuple[int, int, Mapping[str, Any]]]:
    found = []
    for i, case in _cases(node):
        conditions = case.get("conditions")
        if isinstance(conditions, list | tuple):
            found += [(i, j, c) for j, c in enumerate(conditions) if isinstance(c, Mapping)]
    return found


def holds(op: str, left: Any, right: Any) -> bool:
    if isinstance(left, jinja2.Undefined):
        left = None
    if op in UNARY:
        empty = left is None or left == "" or (hasattr(left, "__len__") and len(left) == 0)
        return empty if op == "empty" else not empty
    if op in ("contains", "not_contains"):
        found = _contains(left, right)
        return found if op == "contains" else not found
    if op == "starts_with":
        return isinstance(left, str) and left.startswith(str(right))
    if op == "ends_with":
        return isinstance(left, str) and left.endswith(str(right))
    left, right = _comparable(left, right)
    match op:
        case "eq":
            return bool(left == right)
        case "ne":
            return bool(left != right)
    if left is None or right is None:
        return False
    try:
        match op:
            case "gt":
                return bool(left > right)
            case "ge":
                return bool(left >= right)
            case "lt":
                return bool(left < right)
            case _:
                return bool(left <= right)
    except TypeError:
        raise NodeFailed(
            f"cannot compare {type(left).__name__} with {type(right).__name__} ({op})"
        ) from None


def _contains(left: Any, right: Any) -> bool:
    if isinstance(left, str):
        return str(right) in left
    if isinstance(left, list | tuple):
        return right in left
    if isinstance(left, Mapping):
        return right in left
    return False


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    """A number compared with a numeric string compares as numbers."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left, right
    if isinstance(left, int | float) and isinstance(right, str):
        return left, _number(right)
    if isinstance(right, int | float) and isinstance(left, str):
        return _number(left), right
    return left, right


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
