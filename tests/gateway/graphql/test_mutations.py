"""The three writes: run a workflow, submit and cancel a task, each through
the access rules (roles, tenants) and on the record (runs, task history, the
audit log's reading)."""

from __future__ import annotations

import asyncio

from gateway.server import Gateway
from tests.gateway.graphql.client import codes, query
from tests.gateway.graphql.conftest import Keys

RUN = """
mutation Run($name: String!, $inputs: JSON) {
  runWorkflow(name: $name, inputs: $inputs) {
    name status outputs error usage { outputTokens } nodes { node status }
  }
}
"""
RUNS = '{ workflow(name: "workflows/answer") { runs(first: 5) { nodes { name status } } } }'


async def test_a_user_runs_a_workflow_and_the_run_is_recorded(gateway: Gateway, keys: Keys) -> None:
    variables = {"name": "workflows/answer", "inputs": {"question": "red green blue"}}
    reply = await query(gateway.http_port, RUN, variables, keys.acme_user)
    assert "errors" not in reply, reply
    run = reply["data"]["runWorkflow"]
    assert run["status"] == "succeeded" and run["error"] == ""
    assert "red green blue" in str(run["outputs"])
    assert [n["node"] for n in run["nodes"]] == ["start", "reply", "say"]
    assert run["usage"]["outputTokens"] == 8

    for _ in range(100):  # run records are written in batches
        runs = await query(gateway.http_port, RUNS, key=keys.acme_dev)
        if runs["data"]["workflow"]["runs"]["nodes"]:
            break
        await asyncio.sleep(0.05)
    assert runs["data"]["workflow"]["runs"]["nodes"] == [
        {"name": run["name"], "status": "succeeded"}
    ]
    # Listing runs is for developers, as on gRPC.
    assert codes(await query(gateway.http_port, RUNS, key=keys.acme_user)) == ["PERMISSION_DENIED"]


async def test_running_a_workflow_is_refused_without_a_key_and_across_tenants(
    gateway: Gateway, keys: Keys
) -> None:
    variables = {"name": "workflows/answer", "inputs": {"question": "hi"}}
    assert codes(await query(gateway.http_port, RUN, variables)) == ["UNAUTHENTICATED"]
    assert codes(await query(gateway.http_port, RUN, variables, keys.beta_dev)) == ["NOT_FOUND"]
    bad = {"name": "workflows/answer", "inputs": ["not", "an", "object"]}
    reply = await query(gateway.http_port, RUN, bad, keys.acme_user)
    assert codes(reply) == ["INVALID_ARGUMENT"] and "inputs" in reply["errors"][0]["message"]


SUBMIT = """
mutation Submit($type: String!, $payload: JSON, $key: String!) {
  submitTask(type: $type, payload: $payload, idempotencyKey: $key) { id state type }
}
"""
CANCEL = "mutation Cancel($id: String!) { cancelTask(id: $id) { id state transitions { state } } }"
STATE = "query State($id: String!) { task(id: $id) { state attempts } }"


async def test_submit_then_cancel_a_task_that_waits_out_its_backoff(
    gateway: Gateway, keys: Keys
) -> None:
    payload = {"model": "broken", "prompts": ["hi"]}
    variables = {"type": "generate.batch", "payload": payload, "key": "k-1"}
    reply = await query(gateway.http_port, SUBMIT, variables, keys.acme_user)
    assert "errors" not in reply, reply
    task = reply["data"]["submitTask"]
    assert task["type"] == "generate.batch"
    again = await query(gateway.http_port, SUBMIT, variables, keys.acme_user)
    assert again["data"]["submitTask"]["id"] == task["id"]  # idempotent

    for _ in range(200):
        state = await query(gateway.http_port, STATE, {"id": task["id"]}, keys.acme_user)
        if state["data"]["task"]["state"] == "RETRYING":
            break
        await asyncio.sleep(0.02)
    assert state["data"]["task"] == {"state": "RETRYING", "attempts": 1}

    # Tenant beta can neither see nor cancel it: absent like a missing task.
    theirs = await query(gateway.http_port, CANCEL, {"id": task["id"]}, keys.beta_dev)
    missing = await query(gateway.http_port, CANCEL, {"id": "zz-missing"}, keys.beta_dev)
    assert codes(theirs) == codes(missing) == ["NOT_FOUND"]

    reply = await query(gateway.http_port, CANCEL, {"id": task["id"]}, keys.acme_user)
    cancelled = reply["data"]["cancelTask"]
    assert cancelled["state"] == "CANCELLED"
    assert [t["state"] for t in cancelled["transitions"]][-1] == "CANCELLED"
    listed = await query(gateway.http_port, "{ tasks(state: CANCELLED) { nodes { id } } }",
                         key=keys.acme_user)  # fmt: skip
    assert listed["data"]["tasks"]["nodes"] == [{"id": task["id"]}]


async def test_a_bad_task_is_invalid_argument(gateway: Gateway, keys: Keys) -> None:
    variables = {"type": "generate.batch", "payload": {"prompts": ["hi"]}, "key": ""}
    reply = await query(gateway.http_port, SUBMIT, variables, keys.acme_user)
    assert codes(reply) == ["INVALID_ARGUMENT"] and "payload.model" in reply["errors"][0]["message"]


async def test_the_audit_log_reads_back_the_writes_as_their_actor(
    gateway: Gateway, keys: Keys
) -> None:
    """Writes made during setup (apps, a workflow) are in the audit log, which
    only an admin reads; a mutation is a call like any other, audited where its
    RPC is (RunWorkflow and Submit/Cancel are run and task records, not config
    changes, on every surface)."""
    document = "{ auditEvents(first: 100) { nodes { action resource actor } } }"
    reply = await query(gateway.http_port, document, key=keys.admin)
    events = reply["data"]["auditEvents"]["nodes"]
    dev = await query(gateway.http_port, "{ caller { key } }", key=keys.acme_dev)
    actor = dev["data"]["caller"]["key"]
    mine = [(e["action"], e["resource"]) for e in events if e["actor"] == actor]
    assert mine == [
        ("CreateCollection", "tenants/acme/collections/handbook"),
        ("CreateApp", "tenants/acme/apps/helpdesk"),
        ("CreateWorkflow", "tenants/acme/workflows/answer"),
    ]
    refused = await query(gateway.http_port, document, key=keys.acme_dev)
    assert codes(refused) == ["PERMISSION_DENIED"]
