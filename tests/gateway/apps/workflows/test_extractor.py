"""The `extractor` node: structured output, checked, with one retry."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.apps.workflows.document import DefinitionError
from gateway.apps.workflows.events import FAILED, SUCCEEDED, NodeFinished, RunFinished
from gateway.apps.workflows.validate import load
from router.types import Usage
from tests.gateway.apps.workflows.helpers import run
from tests.gateway.apps.workflows.scripted_router import ScriptedRouter, scripted_services

SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
}


def workflow(**config: Any) -> dict[str, Any]:
    return {
        "inputs": {"text": {"type": "string", "required": True}},
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "pull", "type": "extractor", "config": {
                "model": "small", "input": "{{ start.text }}", "schema": SCHEMA, **config,
            }},
        ],
        "edges": [{"from": "start", "to": "pull"}],
        "outputs": {"name": "{{ pull.data.name }}", "attempts": "{{ pull.attempts }}"},
    }  # fmt: skip


async def go(replies: list[str], **config: Any) -> tuple[list[Any], ScriptedRouter]:
    router = ScriptedRouter(replies)
    svc = scripted_services(router)
    events = await run(
        workflow(**config), {"text": "Ada Lovelace, 36, wrote the first program."}, svc
    )
    assert len(svc.uses) == len(router.requests)  # type: ignore[attr-defined]
    return events, router


def node(events: list[Any]) -> NodeFinished:
    return next(e for e in events if isinstance(e, NodeFinished) and e.node == "pull")


async def test_a_valid_first_reply() -> None:
    events, router = await go(['{"name": "Ada", "age": 36}'], instruction="Names as given.")
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == SUCCEEDED, done
    assert done.outputs == {"name": "Ada", "attempts": 1}
    assert node(events).outputs == {"data": {"name": "Ada", "age": 36}, "attempts": 1}
    [request] = router.requests
    fmt = request.params.response_format
    assert fmt is not None and fmt.type == "json_schema" and fmt.json_schema == SCHEMA
    assert request.params.temperature == 0
    system, user = request.messages
    assert '"required": ["name"]' in system.content and system.content.endswith("Names as given.")
    assert user.content == "Ada Lovelace, 36, wrote the first program."


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("Sure! The name is Ada.", "the model's reply is not JSON"),
        ('{"name": 36}', "does not match the schema at name: 36 is not of type 'string'"),
    ],
)
async def test_a_bad_reply_is_sent_back_once_with_the_error(bad: str, why: str) -> None:
    good = '```json\n{"name": "Ada"}\n```'  # a fenced block is read too
    events, router = await go([bad, good])
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == SUCCEEDED, done
    assert done.outputs == {"name": "Ada", "attempts": 2}
    first, second = router.requests
    assert second.messages[:2] == first.messages
    assistant, feedback = second.messages[2:]
    assert assistant.role == "assistant" and assistant.content == bad
    assert feedback.role == "user" and why in feedback.content
    assert second.params == first.params
    # both calls count: the scripted router's usage is (words in, words out) per call
    words_in = sum(sum(len(m.content.split()) for m in r.messages) for r in router.requests)
    assert node(events).usage == Usage(words_in, len(bad.split()) + len(good.split()))


async def test_two_bad_replies_fail() -> None:
    events, router = await go(["nope", '{"age": 3}'])
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == FAILED and done.error_node == "pull"
    assert "the retry failed too" in done.error
    assert "'name' is a required property" in done.error and "not JSON" in done.error
    assert len(router.requests) == 2
    assert node(events).usage.output_tokens == 1 + 2  # the failed node still reports both calls


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        load(raw)
    return [f"{p.node}|{p.field}|{p.message}" for p in caught.value.problems]


def test_the_schema_is_checked_when_saved() -> None:
    [found] = problems(
        workflow(schema={"type": "object", "properties": {"a": {"type": "nonsense"}}})
    )
    assert found.startswith("pull|config.schema|not a valid JSON Schema: 'nonsense' is not valid")
    [found] = problems(workflow(schema={"type": "array"}))
    assert found == "pull|config.schema|must describe an object (type: object)"
    [found] = problems(workflow(schema="a string"))
    assert found.startswith("pull|config.schema|'a string' is not of type 'object'")
