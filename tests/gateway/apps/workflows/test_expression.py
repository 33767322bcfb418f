"""The `expression` node: CEL over upstream outputs, checked when saved."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.apps.workflows.document import DefinitionError
from gateway.apps.workflows.events import FAILED, SUCCEEDED, NodeFinished, RunFinished
from gateway.apps.workflows.validate import load
from tests.gateway.apps.workflows.helpers import run


def workflow(expression: str) -> dict[str, Any]:
    return {
        "inputs": {"question": {"type": "string", "required": True}, "n": "integer"},
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "search", "type": "retrieval",
             "config": {"collections": ["handbook"], "query": "{{ start.question }}"}},
            {"id": "calc", "type": "expression", "config": {"expression": expression}},
        ],
        "edges": [{"from": "start", "to": "search"}, {"from": "search", "to": "calc"}],
        "outputs": {"value": "{{ calc.value }}"},
    }  # fmt: skip


async def value_of(expression: str, **inputs: Any) -> Any:
    events = await run(workflow(expression), {"question": "leave?", **inputs})
    done = events[-1]
    assert isinstance(done, RunFinished)
    assert done.status == SUCCEEDED, done.error
    return done.outputs["value"]


def problems(expression: str) -> list[tuple[str, str, str]]:
    with pytest.raises(DefinitionError) as caught:
        load(workflow(expression))
    return [(p.node, p.field, p.message) for p in caught.value.problems]


async def test_computes_over_upstream_outputs() -> None:
    assert await value_of("search.top_score > 0.5") is True
    assert await value_of("search.count * 10 + start.n", n=3) == 23
    assert await value_of("start.question + ' (' + string(search.count) + ')'") == "leave? (2)"
    assert await value_of("{'q': start.question, 'top': search.chunks[0].document_id}") == {
        "q": "leave?",
        "top": "leave.md",
    }


async def test_map_and_filter_macros() -> None:
    assert await value_of("search.chunks.map(c, c.text)") == [
        "30 days of paid leave.",
        "Opens at 8.",
    ]
    assert await value_of("search.chunks.filter(c, c.score > 0.5).map(c, c.document_id)") == [
        "leave.md"
    ]
    assert await value_of("search.chunks.all(c, c.score > 0.1)") is True
    assert await value_of("search.chunks.exists_one(c, c.text.contains('leave'))") is True


async def test_results_are_plain_json() -> None:
    assert await value_of("{1: b'abc', 'k': [1u, 2.5, null]}") == {"1": "abc", "k": [1, 2.5, None]}
    assert await value_of("{false: b'\\xff'}") == {"false": "/w=="}
    assert await value_of("duration('1.5s')") == 1.5
    assert await value_of("timestamp('2024-05-01T12:00:00Z')") == "2024-05-01T12:00:00+00:00"


def test_a_syntax_error_is_reported_when_saved() -> None:
    [(node, field, message)] = problems("search.top_score >")
    assert (node, field) == ("calc", "config.expression")
    assert "Syntax error" in message


def test_an_unknown_variable_is_reported_when_saved() -> None:
    found = problems("nothing.score > 0.5 && search.chunks.map(c, c.text).size() > 0")
    assert found == [
        ("calc", "config.expression",
         "reads nothing, but no node upstream of this node is called 'nothing'"),
    ]  # fmt: skip


def test_an_unknown_output_is_reported_when_saved() -> None:
    [(node, field, message)] = problems("search.top > 0.5")
    assert (node, field) == ("calc", "config.expression")
    assert "has no output 'top'" in message and "top_score" in message


def test_a_downstream_node_is_not_readable() -> None:
    raw = workflow("search.value")
    raw["nodes"][1] = {
        "id": "search", "type": "expression", "config": {"expression": "calc.value"},
    }  # fmt: skip
    with pytest.raises(DefinitionError) as caught:
        load(raw)
    assert [(p.node, p.field) for p in caught.value.problems] == [("search", "config.expression")]


def test_macro_variables_and_strings_are_not_read_as_node_ids() -> None:
    load(workflow("search.chunks.map(x, x.text + 'other.thing').filter(y, size(y) > 0)"))
    load(workflow("type(search.count) == int"))


async def test_a_runtime_error_fails_the_node() -> None:
    events = await run(workflow("search.count / 0"), {"question": "q"})
    [calc] = [e for e in events if isinstance(e, NodeFinished) and e.node == "calc"]
    assert calc.status == FAILED
    assert calc.error.startswith("expression: ") and "division by zero" in calc.error
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == FAILED and done.error_node == "calc"


async def test_a_missing_key_fails_the_node() -> None:
    events = await run(workflow("search.chunks[0].nope"), {"question": "q"})
    [calc] = [e for e in events if isinstance(e, NodeFinished) and e.node == "calc"]
    assert calc.status == FAILED
    assert calc.error == "expression: no such key 'nope'"
