"""Checks a definition as a whole, before it is saved or run: every problem is
reported at once, each naming the node and the field.

  - unknown node types; configs against each type's JSON Schema
  - one `start` (none inside a map's sub-graph)
  - dangling edges, edge labels the source node cannot take, cycles (named)
  - nodes no path from `start` reaches
  - references to variables no upstream node produces, and type mismatches
    where the types are known (e.g. `gt` on a list, `map` over a string)
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import jsonschema

from gateway.apps.workflows import refs
from gateway.apps.workflows.document import (
    ERROR_BRANCH,
    Definition,
    DefinitionError,
    Node,
    Problem,
    parse,
    plain,
)
from gateway.apps.workflows.nodes import TYPES
from gateway.apps.workflows.nodes.base import NodeType, Shape

SECRETS = "secrets"  # `{{ secrets.NAME }}`: only where a node type allows it (http headers)


def load(raw: Any) -> Definition:
    """Parse and check `raw`; DefinitionError listing every problem."""
    definition = parse(raw)
    problems = check(definition)
    if problems:
        raise DefinitionError(problems)
    return definition


def check(
    definition: Definition,
    outer: Shape | None = None,
    where: str = "",
) -> list[Problem]:
    """Every problem of `definition`. `outer`: for a map's sub-graph, what its
    nodes may read besides each other (the map's upstream and its item)."""
    problems: list[Problem] = []
    nodes = {n.id: n for n in definition.nodes}
    index = {n.id: i for i, n in enumerate(definition.nodes)}

    def at(node_id: str) -> str:
        """A node's fields: relative to the node at the top, where the node is
        named; inside a sub-graph, from the enclosing node's config."""
        return f"{where}nodes[{index[node_id]}]." if where else ""

    types: dict[str, NodeType] = {}
    malformed: set[str] = set()  # nodes whose config fails its schema: no branch labels read
    for node in definition.nodes:
        kind = TYPES.get(node.type)
        if kind is None:
            known = ", ".join(sorted(TYPES))
            problems.append(
                Problem(
                    node.id, at(node.id) + "type", f"unknown type {node.type!r} (one of {known})"
                )
            )
            continue
        types[node.id] = kind
        found = _schema_problems(kind, node)
        if found:
            malformed.add(node.id)
        problems += [Problem(node.id, at(node.id) + f, m) for f, m in found]
    starts = [n.id for n in definition.nodes if n.type == "start"]
    if outer is None and len(starts) != 1:
        problems.append(
            Problem("", where + "nodes", f"needs exactly one start node, has {len(starts)}")
        )
    if outer is not None:
        for n in definition.nodes:
            if n.type in ("start", "answer"):
                problems.append(
                    Problem(n.id, at(n.id) + "type", f"a map's sub-graph has no {n.type} node")
                )
    problems += _edge_problems(definition, nodes, types, malformed, where)
    if problems:  # the graph checks below assume known types and sound edges
        return problems
    cycle = _cycle(definition)
    if cycle:
        path = " -> ".join(cycle)
        return [Problem(cycle[0], where + "edges", f"cycle: {path}")]
    roots = starts if outer is None else [n for n in nodes if not _preds(definition)[n]]
    reached = _reachable(definition, roots)
    for n in definition.nodes:
        if n.id not in reached:
            problems.append(
                Problem(n.id, where + "edges", "unreachable: no path from start leads here")
            )
    outputs = {n.id: _outputs(types[n.id], n, definition) for n in definition.nodes}
    ancestors = _ancestors(definition)
    for node in definition.nodes:
        visible: dict[str, Mapping[str, str]] = {a: outputs[a] for a in ancestors[node.id]}
        kinds = {a: nodes[a].type for a in ancestors[node.id]}
        if outer is not None:
            visible = {**outer.outputs, **visible}
            kinds = {**outer.types, **kinds}
        shape = Shape(visible, kinds)
        kind = types[node.id]
        allowed = kind.secret_fields
        for f, source in kind.templates(node):
            secret_ok = any(f.startswith(p) for p in allowed)
            problems += _reference_problems(node.id, at(node.id) + f, source, shape, secret_ok)
        here = at(node.id)
        problems += [Problem(p.node, here + p.field, p.message) for p in kind.check(node, shape)]
        inner = kind.inner_scope(node)
        if inner is not None:
            problems += _subgraph_problems(node, shape, dict(inner), here)
    every = Shape(outputs, {n.id: n.type for n in definition.nodes})
    for name, source in definition.outputs.items():
        problems += _reference_problems("", where + f"outputs.{name}", source, every, False)
    return problems


def _subgraph_problems(node: Node, shape: Shape, item: dict[str, str], where: str) -> list[Problem]:
    raw = {k: node.config[k] for k in ("nodes", "edges") if k in node.config}
    prefix = f"{where}config."
    try:
        sub = parse(raw, prefix)
    except DefinitionError as exc:
        return [Problem(p.node or node.id, p.field, p.message) for p in exc.problems]
    outer = Shape({**shape.outputs, node.id: item}, {**shape.types, node.id: node.type})
    problems = check(sub, outer, prefix)
    if not problems:
        inner = Shape(
            {**outer.outputs, **{n.id: _outputs(TYPES[n.type], n, sub) for n in sub.nodes}},
            {**outer.types, **{n.id: n.type for n in sub.nodes}},
        )
        source = node.config.get("output", "")
        problems += _reference_problems(node.id, f"{prefix}output", source, inner, False)
    return problems


def _outputs(kind: NodeType, node: Node, definition: Definition) -> dict[str, str]:
    """What `{{ node.x }}` may read: the type's outputs, and `error` (the
    message) for a node with on_error: branch, which its error edges read."""
    found = dict(kind.output_types(node, definition))
    if node.on_error == "branch":
        found.setdefault("error", "string")
    return found


def _schema_problems(kind: NodeType, node: Node) -> list[tuple[str, str]]:
    validator = _validator(kind.name)
    found = []
    for error in sorted(validator.iter_errors(plain(node.config)), key=lambda e: list(e.path)):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        found.append((f"config{path}", error.message))
    return found


@functools.cache
def _validator(name: str) -> Any:
    schema = TYPES[name].schema
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _edge_problems(
    d: Definition,
    nodes: dict[str, Node],
    types: dict[str, NodeType],
    malformed: set[str],
    where: str,
) -> list[Problem]:
    """Edges to missing nodes, duplicates, and labels the source cannot take
    (not checked for a source whose config is malformed: its schema problems
    say what is wrong, and its labels cannot be read)."""
    problems = []
    seen: set[tuple[str, str, str]] = set()
    for i, e in enumerate(d.edges):
        f = f"{where}edges[{i}]"
        if e.source not in nodes:
            problems.append(Problem("", f + ".from", f"no node {e.source!r}"))
            continue
        if e.target not in nodes:
            problems.append(Problem(e.source, f + ".to", f"no node {e.target!r}"))
            continue
        if (e.source, e.target, e.branch) in seen:
            problems.append(Problem(e.source, f, f"duplicate edge {e.source} -> {e.target}"))
        seen.add((e.source, e.target, e.branch))
        if nodes[e.target].type == "start":
            problems.append(Problem(e.target, f + ".to", "no edge may lead into start"))
        kind = types.get(e.source)
        if kind is None:
            continue
        src = nodes[e.source]
        if e.branch == ERROR_BRANCH:
            if src.on_error != "branch":
                problems.append(Problem(
                    e.source, f + ".branch",
                    "an error edge needs on_error: branch on its source node",
                ))  # fmt: skip
            continue
        if e.source in malformed:
            continue
        labels = kind.branches(src)
        if labels is None and e.branch:
            problems.append(Problem(
                e.source, f + ".branch",
                f"{src.type} does not branch: label only its error edges ({ERROR_BRANCH!r})",
            ))  # fmt: skip
        elif labels is not None and e.branch not in labels:
            problems.append(Problem(
                e.source, f + ".branch",
                f"must be one of {', '.join(map(repr, labels))}, got {e.branch!r}",
            ))  # fmt: skip
    return problems


def _preds(d: Definition) -> dict[str, list[str]]:
    preds: dict[str, list[str]] = {n.id: [] for n in d.nodes}
    for e in d.edges:
        preds[e.target].append(e.source)
    return preds


def _succs(d: Definition) -> dict[str, list[str]]:
    succs: dict[str, list[str]] = defaultdict(list)
    for e in d.edges:
        succs[e.source].append(e.target)
    return succs


def _cycle(d: Definition) -> list[str]:
    """One cycle as [a, b, ..., a], or []."""
    succs = _succs(d)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str]:
        state[n] = 1
        path.append(n)
        for m in succs[n]:
            if state.get(m) == 1:
                return [*path[path.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        path.pop()
        state[n] = 2
        return []

    for node in d.nodes:
        if node.id not in state and (found := visit(node.id)):
            return found
    return []


def _reachable(d: Definition, roots: list[str]) -> set[str]:
    succs, seen, todo = _succs(d), set(roots), list(roots)
    while todo:
        for m in succs[todo.pop()]:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def _ancestors(d: Definition) -> dict[str, set[str]]:
    preds = _preds(d)
    found: dict[str, set[str]] = {}

    def of(n: str) -> set[str]:
        if n not in found:
            found[n] = set()
            acc: set[str] = set()
            for p in preds[n]:
                acc |= {p} | of(p)
            found[n] = acc
        return found[n]

    for node in d.nodes:
        of(node.id)
    return found


def _reference_problems(
    node: str, field: str, source: str, shape: Shape, secret_ok: bool
) -> list[Problem]:
    try:
        found = refs.references(source)
    except refs.TemplateError as exc:
        return [Problem(node, field, str(exc))]
    problems = []
    for name, attr in found:
        if name == SECRETS:
            if not secret_ok:
                problems.append(
                    Problem(node, field, "secrets are readable in http_request headers only")
                )
            continue
        if name not in shape.outputs:
            problems.append(Problem(
                node, field, f"reads {{{{ {name}{'.' + attr if attr else ''} }}}}, but no node "
                f"upstream of {'this node' if node else 'the outputs'} is called {name!r}",
            ))  # fmt: skip
            continue
        fields = shape.outputs[name]
        if attr is not None and "*" not in fields and attr not in fields:
            have = ", ".join(sorted(fields))
            problems.append(Problem(
                node, field, f"{name} ({shape.types.get(name, '?')}) has no output {attr!r} "
                f"(it has: {have})",
            ))  # fmt: skip
    return problems
