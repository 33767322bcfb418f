"""Subscriptions over a real WebSocket speaking graphql-transport-ws: a model's
tokens, an app's chat (its usage recorded), a workflow run's events, a task's
state changes; refusals arrive as coded errors."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.server import Gateway
from tests.gateway.graphql.client import query, subscribe
from tests.gateway.graphql.conftest import Keys

GENERATE = """
subscription Tokens($model: String!) {
  generate(model: $model, messages: [{role: "user", content: "one two three four five"}]) {
    delta deployment finishReason usage { outputTokens }
  }
}
"""


def payloads(messages: list[dict[str, Any]], field: str) -> list[Any]:
    assert messages[-1]["type"] == "complete", messages
    return [m["payload"]["data"][field] for m in messages if m["type"] == "next"]


async def test_a_model_streams_its_tokens(gateway: Gateway, keys: Keys) -> None:
    messages = await subscribe(gateway.http_port, GENERATE, {"model": "chat"}, keys.acme_user)
    chunks = payloads(messages, "generate")
    assert len(chunks) >= 8  # one message per token, not one at the end
    assert chunks[0]["deployment"] == "chat-a"
    assert chunks[-1]["finishReason"] and chunks[-1]["usage"]["outputTokens"] == 8
    assert "".join(c["delta"] for c in chunks).split() == (
        "one two three four five one two three".split()
    )


async def test_a_subscription_without_a_key_is_unauthenticated(
    gateway: Gateway, keys: Keys
) -> None:
    messages = await subscribe(gateway.http_port, GENERATE, {"model": "chat"})
    errors = [e for m in messages if m["type"] == "next" for e in m["payload"].get("errors", ())]
    assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"], messages
    messages = await subscribe(gateway.http_port, GENERATE, {"model": "nope"}, keys.acme_user)
    errors = [e for m in messages if m["type"] == "next" for e in m["payload"].get("errors", ())]
    assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"], messages


CHAT = """
subscription Chat($app: String!) {
  chat(app: $app, query: "how many days of paid leave") {
    conversationId delta citation { documentId } done { usage { outputTokens } deployment }
  }
}
"""
USAGE = '{ usage(start: "2000-01-01T00:00:00Z", groupBy: [APP]) { app requests outputTokens } }'


async def test_an_apps_chat_streams_and_its_usage_is_recorded(gateway: Gateway, keys: Keys) -> None:
    messages = await subscribe(gateway.http_port, CHAT, {"app": "apps/helpdesk"}, keys.acme_user)
    events = payloads(messages, "chat")
    assert events[0]["citation"] == {"documentId": "leave"}
    assert sum(1 for e in events if e["delta"]) >= 2
    assert events[-1]["done"] == {"usage": {"outputTokens": 8}, "deployment": "chat-a"}
    assert len({e["conversationId"] for e in events}) == 1

    for _ in range(100):  # usage is flushed in the background
        rows = (await query(gateway.http_port, USAGE, key=keys.acme_dev))["data"]["usage"]
        if rows:
            break
        await asyncio.sleep(0.05)
    assert rows == [{"app": "helpdesk", "requests": 1, "outputTokens": 8}], rows
    beta = (await query(gateway.http_port, USAGE, key=keys.beta_dev))["data"]["usage"]
    assert beta == []  # acme's usage is not beta's to see

    refused = await subscribe(gateway.http_port, CHAT, {"app": "apps/helpdesk"}, keys.beta_dev)
    errors = [e for m in refused if m["type"] == "next" for e in m["payload"].get("errors", ())]
    assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"]


RUN = """
subscription Run {
  workflowRun(name: "workflows/answer", inputs: {question: "red green blue"}) {
    runId kind node text status
  }
}
"""


async def test_a_workflow_run_streams_its_events(gateway: Gateway, keys: Keys) -> None:
    events = payloads(await subscribe(gateway.http_port, RUN, None, keys.acme_user), "workflowRun")
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert "text_delta" in kinds and "node_finished" in kinds
    assert events[-1]["status"] == "succeeded"
    assert len({e["runId"] for e in events}) == 1


WATCH = "subscription Watch($id: String!) { task(id: $id) { id state } }"
SUBMIT = 'mutation { submitTask(type: "noop", payload: {}) { id } }'


async def test_a_task_streams_its_state_changes_to_the_end(gateway: Gateway, keys: Keys) -> None:
    submitted = await query(gateway.http_port, SUBMIT, key=keys.acme_user)
    task_id = submitted["data"]["submitTask"]["id"]
    states = payloads(
        await subscribe(gateway.http_port, WATCH, {"id": task_id}, keys.acme_user), "task"
    )
    assert states[-1] == {"id": task_id, "state": "SUCCESS"}
    refused = await subscribe(gateway.http_port, WATCH, {"id": task_id}, keys.beta_dev)
    errors = [e for m in refused if m["type"] == "next" for e in m["payload"].get("errors", ())]
    assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"]
