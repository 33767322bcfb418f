"""A workflow definition: the document a developer saves (JSON over the API,
YAML accepted in files), parsed into frozen dataclasses.

    inputs:  {question: {type: string, required: true}}
    nodes:   [{id: start, type: start}, {id: search, type: retrieval, config: {...}},
              {id: reply, type: llm, config: {...}, timeout_s: 30,
               retry: {max_attempts: 2, backoff_s: 0.5}, on_error: branch}, ...]
    edges:   [{from: start, to: search}, {from: check, to: reply, branch: "true"}, ...]
    outputs: {answer: "{{ reply.text }}"}

`parse` checks the document's shape only (types, required keys, ids); the
graph and the references are checked by `validate.py`. Every problem names the
node and the field, e.g. `nodes[2].config.k` or `edges[0].to`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

_EMPTY: Mapping[str, Any] = MappingProxyType({})
ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
INPUT_TYPES = ("string", "number", "integer", "boolean", "object", "array")
ERROR_BRANCH = "error"  # the label of the edges a failed node with on_error: branch follows
RESERVED_IDS = frozenset({"secrets", "loop", "range", "true", "false", "none"})
_MAX_NODES = 500
_NODE_FIELDS = ("id", "type", "config", "title", "timeout_s", "retry", "on_error", "position")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a definition; `node` is "" for the document's own fields."""

    node: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"node {self.node!r}, " if self.node else ""
        return f"{where}{self.field}: {self.message}"


class DefinitionError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Input:
    name: str
    type: str = "string"
    required: bool = False
    default: Any = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class Retry:
    max_attempts: int = 1
    backoff_s: float = 0.5


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    type: str
    config: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    title: str = ""
    timeout_s: float | None = None
    retry: Retry = Retry()
    on_error: Literal["fail", "branch"] = "fail"
    # Where the console's editor drew it (x, y); the engine ignores it.
    position: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    branch: str = ""


@dataclass(frozen=True, slots=True)
class Definition:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...] = ()
    inputs: tuple[Input, ...] = ()
    outputs: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def parse(raw: Any, where: str = "") -> Definition:
    """The definition in `raw` (a JSON object); DefinitionError listing every
    shape problem. `where` prefixes field paths (a map node's sub-graph)."""
    problems: list[Problem] = []

    def bad(field_: str, message: str, node: str = "") -> None:
        problems.append(Problem(node, where + field_, message))

    if not isinstance(raw, Mapping):
        raise DefinitionError([Problem("", where or "definition", "must be an object")])
    for key in raw:
        if key not in ("inputs", "nodes", "edges", "outputs"):
            bad(str(key), "unknown field (expected inputs, nodes, edges, outputs)")
    inputs = _inputs(raw.get("inputs", {}), bad)
    nodes_raw = raw.get("nodes")
    nodes: list[Node] = []
    if not isinstance(nodes_raw, list) or not nodes_raw:
        bad("nodes", "must be a non-empty list")
    elif len(nodes_raw) > _MAX_NODES:
        bad("nodes", f"at most {_MAX_NODES} nodes, got {len(nodes_raw)}")
    else:
        seen: set[str] = set()
        for i, item in enumerate(nodes_raw):
            node = _node(item, f"nodes[{i}]", bad)
            if node is None:
                continue
            if node.id in seen:
                bad(f"nodes[{i}].id", f"duplicate id {node.id!r}", node.id)
                continue
            seen.add(node.id)
            nodes.append(node)
    edges = _edges(raw.get("edges", []), bad)
    outputs = raw.get("outputs", {})
    if not isinstance(outputs, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in outputs.items()
    ):
        bad("outputs", "must map output names to templates (strings)")
        outputs = {}
    if problems:
        raise DefinitionError(problems)
    return Definition(tuple(nodes), tuple(edges), tuple(inputs), MappingProxyType(dict(outputs)))


def _inputs(raw: Any, bad: Any) -> list[Input]:
    if not isinstance(raw, Mapping):
        bad("inputs", "must map input names to {type, required, default}")
        return []
    found = []
    for name, spec in raw.items():
        f = f"inputs.{name}"
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", name):
            bad(f, "an input name is a letter or _ then letters, digits or _")
            continue
        spec = {"type": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, Mapping):
            bad(f, "must be a type name or {type, required, default}")
            continue
        kind = spec.get("type", "string")
        if kind not in INPUT_TYPES:
            bad(f"{f}.type", f"must be one of {', '.join(INPUT_TYPES)}, got {kind!r}")
            continue
        required = spec.get("required", False)
        if not isinstance(required, bool):
            bad(f"{f}.required", "must be true or false")
            continue
        default = spec.get("default")
        if default is not None and not conforms(default, kind):
            bad(f"{f}.default", f"is not a {kind}")
            continue
        found.append(Input(name, kind, required, default, str(spec.get("description", ""))))
    return found


def _node(raw: Any, f: str, bad: Any) -> Node | None:
    if not isinstance(raw, Mapping):
        bad(f, "must be an object with id and type")
        return None
    node_id, kind = raw.get("id"), raw.get("type")
    nid = node_id if isinstance(node_id, str) else ""
    for key in raw:
        if key not in _NODE_FIELDS:
            bad(f"{f}.{key}", "unknown field", nid)
    if not isinstance(node_id, str) or not ID.match(node_id):
        bad(f"{f}.id", "must match [a-z][a-z0-9_]* (at most 63 characters)", nid)
        return None
    if node_id in RESERVED_IDS:
        bad(f"{f}.id", f"{node_id!r} is reserved", nid)
        return None
    if not isinstance(kind, str) or not kind:
        bad(f"{f}.type", "is required", nid)
        return None
    config = raw.get("config", {})
    if not isinstance(config, Mapping):
        bad(f"{f}.config", "must be an object", nid)
        return None
    timeout = raw.get("timeout_s")
    if timeout is not None and (
        not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 3600
    ):
        bad(f"{f}.timeout_s", "must be a number of seconds in (0, 3600]", nid)
        return None
    retry = _retry(raw.get("retry", {}), f"{f}.retry", nid, bad)
    on_error = raw.get("on_error", "fail")
    if on_error not in ("fail", "branch"):
        bad(f"{f}.on_error", f"must be fail or branch, got {on_error!r}", nid)
        return None
    if retry is None:
        return None
    position = raw.get("position")
    if position is not None:
        position = _position(position)
        if position is None:
            bad(f"{f}.position", "must be {x, y}, numbers within ±1e6", nid)
            return None
    return Node(
        node_id, kind, MappingProxyType(dict(config)), str(raw.get("title", "")),
        float(timeout) if timeout is not None else None, retry, on_error, position,
    )  # fmt: skip


def _position(raw: Any) -> tuple[float, float] | None:
    if not isinstance(raw, Mapping) or set(raw) != {"x", "y"}:
        return None
    x, y = raw["x"], raw["y"]
    for v in (x, y):
        if not isinstance(v, int | float) or isinstance(v, bool) or not -1e6 <= v <= 1e6:
            return None
    return float(x), float(y)


def _retry(raw: Any, f: str, nid: str, bad: Any) -> Retry | None:
    if not isinstance(raw, Mapping):
        bad(f, "must be {max_attempts, backoff_s}", nid)
        return None
    attempts, backoff = raw.get("max_attempts", 1), raw.get("backoff_s", 0.5)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 10:
        bad(f"{f}.max_attempts", "must be an integer in [1, 10]", nid)
        return None
    if not isinstance(backoff, int | float) or isinstance(backoff, bool) or not 0 <= backoff <= 60:
        bad(f"{f}.backoff_s", "must be a number of seconds in [0, 60]", nid)
        return None
    return Retry(attempts, float(backoff))


def _edges(raw: Any, bad: Any) -> list[Edge]:
    if not isinstance(raw, list):
        bad("edges", "must be a list of {from, to, branch}")
        return []
    edges = []
    for i, item in enumerate(raw):
        f = f"edges[{i}]"
        if not isinstance(item, Mapping):
            bad(f, "must be an object {from, to, branch}")
            continue
        src, dst, branch = item.get("from"), item.get("to"), item.get("branch", "")
        for key in item:
            if key not in ("from", "to", "branch"):
                bad(f"{f}.{key}", "unknown field (expected from, to, branch)")
        if not isinstance(src, str) or not src:
            bad(f"{f}.from", "must name a node")
        elif not isinstance(dst, str) or not dst:
            bad(f"{f}.to", "must name a node")
        elif not isinstance(branch, str):
            bad(f"{f}.branch", "must be a string")
        else:
            edges.append(Edge(src, dst, branch))
    return edges


def conforms(value: Any, kind: str) -> bool:
    """Whether a JSON value is of an input type."""
    match kind:
        case "string":
            return isinstance(value, str)
        case "boolean":
            return isinstance(value, bool)
        case "integer":
            return (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, float) and value.is_integer()
            )
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "object":
            return isinstance(value, Mapping)
        case "array":
            return isinstance(value, list | tuple)
    return True


def to_json(d: Definition) -> dict[str, Any]:
    """The document form of `d` (what `parse` reads back to an equal definition)."""
    nodes = []
    for n in d.nodes:
        item: dict[str, Any] = {"id": n.id, "type": n.type}
        if n.config:
            item["config"] = plain(n.config)
        if n.title:
            item["title"] = n.title
        if n.timeout_s is not None:
            item["timeout_s"] = n.timeout_s
        if n.retry != Retry():
            item["retry"] = {"max_attempts": n.retry.max_attempts, "backoff_s": n.retry.backoff_s}
        if n.on_error != "fail":
            item["on_error"] = n.on_error
        if n.position is not None:
            item["position"] = {"x": n.position[0], "y": n.position[1]}
        nodes.append(item)
    out: dict[str, Any] = {"nodes": nodes}
    if d.inputs:
        out["inputs"] = {
            i.name: {
                "type": i.type, "required": i.required,
                **({"default": i.default} if i.default is not None else {}),
                **({"description": i.description} if i.description else {}),
            }
            for i in d.inputs
        }  # fmt: skip
    if d.edges:
        out["edges"] = [
            {"from": e.source, "to": e.target, **({"branch": e.branch} if e.branch else {})}
            for e in d.edges
        ]
    if d.outputs:
        out["outputs"] = dict(d.outputs)
    return out


def plain(value: Any) -> Any:
    """`value` with every mapping a dict and every sequence a list (deep)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
