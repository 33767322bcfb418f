"""The `map` node: a sub-graph per item, bounded concurrency, results in order."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.apps.workflows.document import DefinitionError
from gateway.apps.workflows.events import FAILED, SUCCEEDED, NodeFinished, RunFinished
from gateway.apps.workflows.nodes.map import MAX_ITEMS
from gateway.apps.workflows.validate import load
from router.errors import ErrorKind, ProviderError
from router.types import Request, Usage
from tests.gateway.apps.workflows.helpers import run, services
from tests.gateway.apps.workflows.scripted_router import ScriptedRouter, scripted_services


def workflow(map_config: dict[str, Any], inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "inputs": inputs or {"xs": {"type": "array", "required": True}},
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "each", "type": "map", "config": map_config},
        ],
        "edges": [{"from": "start", "to": "each"}],
        "outputs": {"results": "{{ each.results }}", "count": "{{ each.count }}"},
    }


ASK = {
    "items": "{{ start.xs }}",
    "nodes": [{
        "id": "say", "type": "llm",
        "config": {"model": "any", "messages": [{"role": "user", "content": "{{ each.item }}"}]},
    }],
    "output": "{{ say.text }}",
}  # fmt: skip


def last(events: list[Any]) -> RunFinished:
    assert isinstance(events[-1], RunFinished)
    return events[-1]


def item_of(request: Request) -> int:
    return int(request.messages[-1].content)


async def test_results_keep_the_input_order_and_the_concurrency_bound() -> None:
    # later items answer sooner, so they finish first
    router = ScriptedRouter(lambda r: f"r{item_of(r)}", delay=lambda r: (10 - item_of(r)) * 0.01)
    svc = scripted_services(router)
    events = await run(workflow({**ASK, "concurrency": 3}), {"xs": list(range(10))}, svc)
    done = last(events)
    assert done.status == SUCCEEDED, done.error
    assert done.outputs == {"results": [f"r{i}" for i in range(10)], "count": 10}
    assert router.peak == 3
    assert len(router.requests) == 10
    node = next(e for e in events if isinstance(e, NodeFinished) and e.node == "each")
    inner = sum((u.input_tokens for u in svc.uses), 0), sum((u.output_tokens for u in svc.uses), 0)  # type: ignore[attr-defined]
    assert node.usage == Usage(*inner) == Usage(10, 10)
    assert done.usage == node.usage


async def test_concurrency_defaults_to_and_never_exceeds_the_gateways_bound() -> None:
    for config in (ASK, {**ASK, "concurrency": 50}):
        router = ScriptedRouter(lambda r: "ok", delay=lambda r: 0.01)
        events = await run(
            workflow(config), {"xs": list(range(12))}, scripted_services(router, map_concurrency=4)
        )
        assert last(events).status == SUCCEEDED
        assert router.peak == 4


async def test_item_and_index_inside_the_subgraph_and_the_maps_upstream() -> None:
    config = {
        "items": "{{ start.xs }}",
        "nodes": [
            {"id": "fmt", "type": "template",
             "config": {"template": "{{ start.prefix }}{{ each.index }}={{ each.item.name }}"}},
            {"id": "shout", "type": "template", "config": {"template": "{{ fmt.text | upper }}"}},
        ],
        "edges": [{"from": "fmt", "to": "shout"}],
        "output": "{{ shout.text }}",
    }  # fmt: skip
    inputs = {"xs": {"type": "array"}, "prefix": {"type": "string"}}
    events = await run(
        workflow(config, inputs), {"xs": [{"name": "a"}, {"name": "b"}], "prefix": "#"}, services()
    )
    assert last(events).outputs == {"results": ["#0=A", "#1=B"], "count": 2}


async def test_an_empty_list_gives_no_results() -> None:
    events = await run(workflow(ASK), {"xs": []}, scripted_services(ScriptedRouter([])))
    assert last(events).outputs == {"results": [], "count": 0}


async def test_the_first_failing_item_fails_the_node_and_cancels_the_rest() -> None:
    def reply(request: Request) -> str:
        if item_of(request) == 3:
            raise ProviderError(ErrorKind.UPSTREAM_5XX, "boom")
        return "ok"

    router = ScriptedRouter(reply, delay=lambda r: 0.0 if item_of(r) == 3 else 5.0)
    started = time.monotonic()
    events = await run(
        workflow({**ASK, "concurrency": 8}), {"xs": list(range(6))}, scripted_services(router)
    )
    assert time.monotonic() - started < 2.0
    done = last(events)
    assert done.status == FAILED and done.error_node == "each"
    assert "item 3" in done.error and "say" in done.error and "boom" in done.error
    assert router.active == 0
    assert router.cancelled == 5


async def test_a_failing_template_names_the_item() -> None:
    config = {
        "items": "{{ start.xs }}",
        "nodes": [
            {"id": "div", "type": "template", "config": {"template": "{{ 10 // each.item }}"}}
        ],
        "output": "{{ div.text }}",
    }
    events = await run(workflow({**config, "concurrency": 1}), {"xs": [1, 2, 0, 5]}, services())
    done = last(events)
    assert done.status == FAILED
    assert done.error.startswith("node 'each': item 2: node 'div'")


async def test_items_that_are_not_a_list_fail_at_run_time() -> None:
    config = {**ASK, "items": "{{ start.n * 2 }}"}  # an expression: its type is known when it runs
    events = await run(workflow(config, {"n": {"type": "integer"}}), {"n": 4}, services())
    done = last(events)
    assert done.status == FAILED
    assert "config.items: must resolve to a list, got int" in done.error


async def test_too_many_items_fail() -> None:
    events = await run(workflow(ASK), {"xs": [0] * (MAX_ITEMS + 1)}, services())
    assert last(events).status == FAILED
    assert f"at most {MAX_ITEMS} items" in last(events).error


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        load(raw)
    return [f"{p.node}|{p.field}|{p.message}" for p in caught.value.problems]


def test_a_typed_non_list_is_a_problem_when_saved() -> None:
    found = problems(workflow({**ASK, "items": "{{ start.q }}"}, {"q": {"type": "string"}}))
    assert found == ["each|config.items|map needs a list, but start.q is string"]
    assert problems(workflow({**ASK, "items": "plain words"})) == [
        "each|config.items|must be a template resolving to a list"
    ]
    load(workflow(ASK))  # an array input is fine


def test_inner_references_are_checked_when_saved() -> None:
    nodes = [
        {"id": "a", "type": "template", "config": {"template": "{{ each.item }} {{ each.index }}"}},
        {"id": "b", "type": "template", "config": {"template": "{{ nope.text }} {{ each.other }}"}},
    ]
    edges = [{"from": "a", "to": "b"}]
    found = problems(workflow({**ASK, "nodes": nodes, "edges": edges, "output": "{{ b.text }}"}))
    assert len(found) == 2, found
    assert found[0].startswith("b|") and "reads {{ nope.text }}, but no node upstream" in found[0]
    assert found[1].startswith("b|") and "each (map) has no output 'other'" in found[1]
    # `output` reads the sub-graph's nodes
    nodes[1]["config"] = {"template": "{{ a.text }}"}
    found = problems(workflow({**ASK, "nodes": nodes, "edges": edges, "output": "{{ a.missing }}"}))
    assert found == ["each|config.output|a (template) has no output 'missing' (it has: text)"]
    load(workflow({**ASK, "nodes": nodes, "edges": edges, "output": "{{ b.text }} {{ a.text }}"}))


def test_the_subgraph_has_no_start_node() -> None:
    nodes = [
        {"id": "s", "type": "start"},
        {"id": "t", "type": "template", "config": {"template": "x"}},
    ]
    found = problems(workflow({**ASK, "nodes": nodes, "output": "{{ t.text }}"}))
    assert found == ["s|config.nodes[0].type|a map's sub-graph has no start node"]


def test_concurrency_is_bounded_by_the_schema() -> None:
    for bad in (0, 257):
        found = problems(workflow({**ASK, "concurrency": bad}))
        assert len(found) == 1 and found[0].startswith("each|config.concurrency|")


def test_a_subgraph_problem_names_the_inner_node_and_its_field() -> None:
    nodes = [{"id": "t", "type": "template", "config": {"template": "{{ ghost.text }}"}}]
    found = problems(workflow({**ASK, "nodes": nodes, "output": "{{ t.text }}"}))
    assert len(found) == 1
    node, field, message = found[0].split("|")
    assert (node, field) == ("t", "config.nodes[0].config.template")
    assert "no node upstream of this node is called 'ghost'" in message
