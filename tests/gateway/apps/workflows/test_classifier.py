"""The `classifier` node: one model call picks a class, and so a branch."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.apps.workflows.document import DefinitionError
from gateway.apps.workflows.events import FAILED, SKIPPED, SUCCEEDED, NodeFinished, RunFinished
from gateway.apps.workflows.nodes.base import NodeFailed
from gateway.apps.workflows.nodes.classifier import MAX_TOKENS, pick
from gateway.apps.workflows.validate import load
from tests.gateway.apps.workflows.helpers import run, services
from tests.gateway.apps.workflows.scripted_router import ScriptedRouter, scripted_services

CLASSES = [
    {"label": "billing", "description": "invoices, payments, refunds"},
    {"label": "technical", "description": "errors and outages"},
    {"label": "other"},
]


def workflow(**config: Any) -> dict[str, Any]:
    return {
        "inputs": {"question": {"type": "string", "required": True}},
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "sort", "type": "classifier", "config": {
                "model": "chat", "input": "{{ start.question }}", "classes": CLASSES, **config,
            }},
            {"id": "bill", "type": "template",
             "config": {"template": "billing: {{ start.question }}"}},
            {"id": "tech", "type": "template", "config": {"template": "tech: {{ sort.label }}"}},
            {"id": "rest", "type": "template", "config": {"template": "other"}},
            {"id": "after_tech", "type": "template", "config": {"template": "{{ tech.text }}!"}},
        ],
        "edges": [
            {"from": "start", "to": "sort"},
            {"from": "sort", "to": "bill", "branch": "billing"},
            {"from": "sort", "to": "tech", "branch": "technical"},
            {"from": "sort", "to": "rest", "branch": "other"},
            {"from": "tech", "to": "after_tech"},
        ],
        "outputs": {"label": "{{ sort.label }}"},
    }  # fmt: skip


def finished(events: list[Any]) -> dict[str, NodeFinished]:
    return {e.node: e for e in events if isinstance(e, NodeFinished)}


async def test_routes_to_the_branch_the_model_names() -> None:
    # the mock echoes the question: "billing billing ...", which names one class
    events = await run(workflow(), {"question": "billing"}, services())
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == SUCCEEDED, done
    assert done.outputs == {"label": "billing"}
    nodes = finished(events)
    assert nodes["sort"].branch == "billing" and nodes["sort"].outputs == {"label": "billing"}
    assert nodes["bill"].status == SUCCEEDED and nodes["bill"].outputs == {
        "text": "billing: billing"
    }
    assert {n: nodes[n].status for n in ("tech", "rest", "after_tech")} == dict.fromkeys(
        ("tech", "rest", "after_tech"), SKIPPED
    )
    assert nodes["sort"].usage.output_tokens > 0


async def test_the_prompt_lists_the_classes_and_asks_for_one_label() -> None:
    router = ScriptedRouter(['"Technical."'])
    events = await run(
        workflow(instruction="Outages count as {{ start.question | length }} things."),
        {"question": "the site is down"}, scripted_services(router),
    )  # fmt: skip
    nodes = finished(events)
    assert nodes["sort"].branch == "technical"
    assert nodes["after_tech"].outputs == {"text": "tech: technical!"}
    assert nodes["bill"].status == nodes["rest"].status == SKIPPED
    [request] = router.requests
    assert request.model == "chat"
    assert request.params.temperature == 0 and request.params.max_tokens == MAX_TOKENS
    system, user = request.messages
    assert system.role == "system" and user.role == "user"
    assert user.content == "the site is down"
    assert (
        "- billing: invoices, payments, refunds\n- technical: errors and outages\n- other\n"
        in system.content
    )
    assert "Outages count as 16 things." in system.content
    assert "exactly one" in system.content


@pytest.mark.parametrize("reply", ["I cannot tell", "billing or technical"])
async def test_a_reply_naming_no_single_class_fails(reply: str) -> None:
    router = ScriptedRouter([reply])
    events = await run(workflow(), {"question": "hm"}, scripted_services(router))
    done = events[-1]
    assert isinstance(done, RunFinished) and done.status == FAILED and done.error_node == "sort"
    assert repr(reply) in done.error
    assert set(finished(events)) == {"start", "sort"}  # the run ends there: no branch ran


def test_pick() -> None:
    labels = ("billing", "tech-support", "Other")
    assert pick("billing", labels) == "billing"
    assert pick("  'BILLING'.\n", labels) == "billing"
    assert pick("**Tech-Support**", labels) == "tech-support"
    assert pick("other", labels) == "Other"
    assert pick("The class is: billing, I think.", labels) == "billing"
    with pytest.raises(NodeFailed, match="names several classes"):
        pick("billing, or other", labels)
    with pytest.raises(NodeFailed, match="names no class"):
        pick("tech", labels)  # a word, not a part of one


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        load(raw)
    return [f"{p.node}|{p.field}|{p.message}" for p in caught.value.problems]


def test_classes_are_checked_when_saved() -> None:
    raw = workflow(classes=[{"label": "billing"}, {"label": "Billing"}, {"label": "other"}])
    raw["edges"] = raw["edges"][:2]
    raw["nodes"] = [n for n in raw["nodes"] if n["id"] not in ("tech", "rest", "after_tech")]
    assert problems(raw) == ["sort|config.classes[1].label|'Billing' is used twice"]
    raw["nodes"][1]["config"]["classes"] = [{"label": "billing"}]
    assert problems(raw) == ["sort|config.classes|needs at least 2 classes"]
    raw["nodes"][1]["config"]["classes"] = [{"label": "billing"}, {"label": "error"}]
    assert problems(raw) == ["sort|config.classes[1].label|'error' labels the error edges"]
    raw["nodes"][1]["config"]["classes"] = [{"label": "billing"}, {"label": "no spaces"}]
    assert problems(raw)[0].startswith("sort|config.classes[1].label|'no spaces' does not match")


def test_edges_must_name_a_class() -> None:
    raw = workflow()
    raw["edges"][1]["branch"] = "refunds"
    [found] = problems(raw)
    assert (
        found
        == "sort|edges[1].branch|must be one of 'billing', 'technical', 'other', got 'refunds'"
    )
