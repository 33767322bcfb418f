"""Workflows through the gateway, over gRPC and REST: save (validated,
versioned, audited), publish, run streamed / unary / as a task, run records,
usage per model call, roles and tenant isolation, secrets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx2 as httpx
import pytest
from google.protobuf import json_format, struct_pb2

from gateway.pb import app_pb2 as pb
from gateway.pb import app_pb2_grpc, tasks_pb2, tasks_pb2_grpc
from gateway.server import Gateway
from tests.conftest import StartGateway
from tests.gateway.apps.test_auth import admin, bearer, new_key, secure_top
from tests.gateway.apps.workflows.helpers import MODELS, FixedRetriever

Meta = tuple[tuple[str, str], ...]
ECHO = "30 days of paid leave. 30 days of"  # model "chat" echoes the prompt's words, 8 of them

RAG: dict[str, Any] = {
    "inputs": {"question": {"type": "string", "required": True}},
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "search", "type": "retrieval",
         "config": {"collections": ["handbook"], "query": "{{ start.question }}", "k": 2}},
        {"id": "check", "type": "if_else", "config": {"cases": [{"label": "found", "conditions": [
            {"variable": "{{ search.top_score }}", "operator": "ge", "value": 0.5}]}]}},
        {"id": "reply", "type": "llm", "config": {"model": "chat", "messages": [
            {"role": "user", "content": "{{ search.chunks[0].text }}"}]}},
        {"id": "say", "type": "answer", "config": {"text": "{{ reply.text }}"}},
        {"id": "sorry", "type": "answer", "config": {"text": "No idea."}},
    ],
    "edges": [
        {"from": "start", "to": "search"}, {"from": "search", "to": "check"},
        {"from": "check", "to": "reply", "branch": "found"}, {"from": "reply", "to": "say"},
        {"from": "check", "to": "sorry", "branch": "else"},
    ],
}  # fmt: skip


SLOW: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "wait", "type": "llm",
         "config": {"model": "slow", "messages": [{"role": "user", "content": "hi"}]}},
    ],
    "edges": [{"from": "start", "to": "wait"}],
}  # fmt: skip


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


@pytest.fixture
async def gateway(start_gateway: StartGateway, tmp_path: Path) -> Gateway:
    gw = await start_gateway(MODELS, top=secure_top(tmp_path))
    gw.apps.chat.retriever = FixedRetriever()
    return gw


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> app_pb2_grpc.AppStub:
    return app_pb2_grpc.AppStub(channel)


@pytest.fixture
async def dev(channel: grpc.aio.Channel, gateway: Gateway) -> Meta:
    return bearer(await new_key(channel, gateway, "acme", "developer"))


@pytest.fixture
async def user(channel: grpc.aio.Channel, gateway: Gateway) -> Meta:
    return bearer(await new_key(channel, gateway, "acme", "user"))


@pytest.fixture
async def other(channel: grpc.aio.Channel, gateway: Gateway) -> Meta:
    return bearer(await new_key(channel, gateway, "beta", "developer"))


async def create(
    stub: app_pb2_grpc.AppStub, meta: Meta, wid: str = "rag", doc: Any = None
) -> pb.Workflow:
    return await stub.CreateWorkflow(
        pb.CreateWorkflowRequest(
            workflow_id=wid,
            workflow=pb.Workflow(display_name="RAG", definition=struct(doc or RAG)),
        ),
        metadata=meta,
    )


async def events(
    stub: app_pb2_grpc.AppStub, meta: Meta, name: str = "workflows/rag", **inputs: Any
) -> list[pb.WorkflowEvent]:
    call = stub.RunWorkflow(pb.RunWorkflowRequest(name=name, inputs=struct(inputs)), metadata=meta)
    return [e async for e in call]


async def test_save_publish_and_run_streamed(
    stub: app_pb2_grpc.AppStub, dev: Meta, user: Meta
) -> None:
    saved = await create(stub, dev)
    assert (saved.name, saved.version, saved.latest_version, saved.published_version) == (
        "workflows/rag",
        1,
        1,
        0,
    )
    assert json_format.MessageToDict(saved.definition)["nodes"][1]["config"]["k"] == 2
    got = await events(stub, user, question="how much leave")
    kinds = [e.WhichOneof("event") for e in got]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert got[0].run_started.version == 1 and got[0].run_id
    finished = {e.node_finished.node: e.node_finished for e in got if e.HasField("node_finished")}
    assert finished["sorry"].status == "skipped"
    assert finished["check"].branch == "found"
    assert finished["reply"].usage.output_tokens == 8  # the mock echoes, cycling to 8 words
    deltas = "".join(e.text_delta.text for e in got if e.HasField("text_delta"))
    assert deltas == ECHO
    done = got[-1].run_finished
    assert done.status == "succeeded"
    assert json_format.MessageToDict(done.outputs) == {"answer": deltas}
    assert done.usage.output_tokens == 8


async def test_runs_are_recorded_with_each_node(stub: app_pb2_grpc.AppStub, dev: Meta) -> None:
    await create(stub, dev)
    run = await stub.RunWorkflowUnary(
        pb.RunWorkflowRequest(name="workflows/rag", inputs=struct({"question": "leave"})),
        metadata=dev,
    )
    assert run.status == "succeeded" and run.name.startswith("workflows/rag/runs/")
    assert json_format.MessageToDict(run.inputs) == {"question": "leave"}
    assert [n.node for n in run.nodes][:3] == ["start", "search", "check"]
    search = next(n for n in run.nodes if n.node == "search")
    assert json_format.MessageToDict(search.inputs) == {"start.question": "leave"}
    assert json_format.MessageToDict(search.outputs)["count"] == 2
    again = await stub.GetWorkflowRun(pb.GetWorkflowRunRequest(name=run.name), metadata=dev)
    assert again == run
    listed = await stub.ListWorkflowRuns(
        pb.ListWorkflowRunsRequest(name="workflows/rag"), metadata=dev
    )
    assert [r.name for r in listed.runs] == [run.name]
    assert not listed.runs[0].nodes  # the list leaves the per-node records out


async def test_every_save_is_a_version_and_runs_use_the_published_one(
    stub: app_pb2_grpc.AppStub, dev: Meta, gateway: Gateway
) -> None:
    await create(stub, dev)
    await stub.PublishWorkflow(
        pb.PublishWorkflowRequest(name="workflows/rag", version=1), metadata=dev
    )
    v2 = json.loads(json.dumps(RAG))
    v2["nodes"][5]["config"]["text"] = "Nothing found."
    updated = await stub.UpdateWorkflow(
        pb.UpdateWorkflowRequest(workflow=pb.Workflow(name="workflows/rag", definition=struct(v2))),
        metadata=dev,
    )
    assert (updated.version, updated.latest_version, updated.published_version) == (2, 2, 1)
    versions = await stub.ListWorkflowVersions(
        pb.ListWorkflowVersionsRequest(name="workflows/rag"), metadata=dev
    )
    assert [v.version for v in versions.versions] == [2, 1]
    published = await stub.RunWorkflowUnary(
        pb.RunWorkflowRequest(name="workflows/rag", inputs=struct({"question": "zzz"})),
        metadata=dev,
    )
    draft = await stub.RunWorkflowUnary(
        pb.RunWorkflowRequest(name="workflows/rag", version=2, inputs=struct({"question": "zzz"})),
        metadata=dev,
    )
    gateway.apps.chat.retriever = FixedRetriever()
    assert published.version == 1 and draft.version == 2
    # the retriever returns both passages whatever the query: top score 0.82 -> "found"
    assert json_format.MessageToDict(published.outputs)["answer"] == ECHO
    audit = await stub.ListAuditEvents(
        pb.ListAuditEventsRequest(resource="tenants/acme/workflows/rag"), metadata=admin(gateway)
    )
    assert [e.action for e in audit.events] == [
        "CreateWorkflow",
        "PublishWorkflow",
        "UpdateWorkflow",
    ]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda d: d["edges"].append({"from": "say", "to": "search"}),
            "cycle: search -> check -> reply -> say -> search",
        ),
        (lambda d: d["nodes"].append({"id": "x", "type": "teleport"}), "unknown type 'teleport'"),
        (lambda d: d["edges"].append({"from": "ghost", "to": "say"}), "no node 'ghost'"),
        (lambda d: d["nodes"][1]["config"].update(k=0), "config.k"),
    ],
)
async def test_a_bad_definition_is_refused_naming_node_and_field(
    stub: app_pb2_grpc.AppStub, dev: Meta, change: Any, problem: str
) -> None:
    doc = json.loads(json.dumps(RAG))
    change(doc)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(stub, dev, doc=doc)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert problem in caught.value.details()
    checked = await stub.ValidateWorkflow(
        pb.ValidateWorkflowRequest(definition=struct(doc)), metadata=dev
    )
    assert not checked.valid and any(problem in f"{p.field}: {p.message}" for p in checked.problems)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.GetWorkflow(pb.GetWorkflowRequest(name="workflows/rag"), metadata=dev)
    assert gone.value.code() is grpc.StatusCode.NOT_FOUND


async def test_bad_inputs_are_refused_before_the_run(stub: app_pb2_grpc.AppStub, dev: Meta) -> None:
    await create(stub, dev)
    for inputs, field in (({}, "inputs.question"), ({"question": 3}, "inputs.question"),
                          ({"question": "q", "x": 1}, "inputs.x")):  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await events(stub, dev, **inputs)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith(field)


async def test_roles_and_tenants(
    stub: app_pb2_grpc.AppStub, dev: Meta, user: Meta, other: Meta
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await create(stub, user)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    await create(stub, dev)
    run = await stub.RunWorkflowUnary(
        pb.RunWorkflowRequest(name="workflows/rag", inputs=struct({"question": "leave"})),
        metadata=user,
    )
    for call in (
        stub.GetWorkflow(pb.GetWorkflowRequest(name="workflows/rag"), metadata=other),
        stub.RunWorkflowUnary(
            pb.RunWorkflowRequest(name="workflows/rag", inputs=struct({"question": "q"})),
            metadata=other,
        ),
        stub.GetWorkflowRun(pb.GetWorkflowRunRequest(name=run.name), metadata=other),
        stub.DeleteWorkflow(pb.DeleteWorkflowRequest(name="workflows/rag"), metadata=other),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    mine = await stub.ListWorkflows(pb.ListWorkflowsRequest(), metadata=other)
    assert list(mine.workflows) == []


async def test_usage_is_recorded_per_model_call_with_the_run(
    stub: app_pb2_grpc.AppStub, dev: Meta, gateway: Gateway
) -> None:
    await create(stub, dev)
    run = await stub.RunWorkflowUnary(
        pb.RunWorkflowRequest(name="workflows/rag", inputs=struct({"question": "leave"})),
        metadata=dev,
    )
    await gateway.apps.recorder.flush()
    rows = await stub.QueryUsage(pb.QueryUsageRequest(group_by=["app", "model"]), metadata=dev)
    by_app = {(r.group["app"], r.group["model"]): r for r in rows.rows}
    row = by_app[("workflows/rag", "chat")]
    assert (row.requests, row.output_tokens) == (1, 8)
    async with gateway.apps.store.engine.connect() as conn:
        from sqlalchemy import text

        found = (
            await conn.execute(text("SELECT run_id, method FROM usage WHERE app = 'workflows/rag'"))
        ).all()
    assert found == [(run.name.rsplit("/", 1)[1], "workflow:reply")]


async def test_a_deadline_ends_the_run_and_is_recorded(
    stub: app_pb2_grpc.AppStub, dev: Meta
) -> None:
    slow = SLOW
    await create(stub, dev, "slow", slow)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RunWorkflowUnary(
            pb.RunWorkflowRequest(name="workflows/slow"), metadata=dev, timeout=0.3
        )
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    runs = await stub.ListWorkflowRuns(
        pb.ListWorkflowRunsRequest(name="workflows/slow"), metadata=dev
    )
    for _ in range(50):
        if runs.runs and runs.runs[0].status != "running":
            break
        await asyncio.sleep(0.05)
        runs = await stub.ListWorkflowRuns(
            pb.ListWorkflowRunsRequest(name="workflows/slow"), metadata=dev
        )
    assert runs.runs[0].status in ("failed", "cancelled")


async def test_a_cancelled_run_is_recorded_cancelled(stub: app_pb2_grpc.AppStub, dev: Meta) -> None:
    slow = SLOW
    await create(stub, dev, "slow", slow)
    call = stub.RunWorkflow(pb.RunWorkflowRequest(name="workflows/slow"), metadata=dev)
    async for event in call:
        if event.HasField("node_started") and event.node_started.node == "wait":
            call.cancel()
            break
    for _ in range(100):
        runs = await stub.ListWorkflowRuns(
            pb.ListWorkflowRunsRequest(name="workflows/slow"), metadata=dev
        )
        if runs.runs and runs.runs[0].status != "running":
            break
        await asyncio.sleep(0.02)
    assert runs.runs[0].status == "cancelled"


async def test_submit_runs_it_as_a_task(
    channel: grpc.aio.Channel, stub: app_pb2_grpc.AppStub, dev: Meta
) -> None:
    await create(stub, dev)
    submitted = await stub.SubmitWorkflowRun(
        pb.RunWorkflowRequest(name="workflows/rag", inputs=struct({"question": "leave"})),
        metadata=dev,
    )
    tasks = tasks_pb2_grpc.TasksStub(channel)
    task_id = submitted.task.removeprefix("tasks/")
    queued = await tasks.Get(tasks_pb2.GetTaskRequest(id=task_id), metadata=dev)
    payload = json_format.MessageToDict(queued.payload)
    assert (payload["workflow"], payload["version"]) == ("rag", 1)  # pinned to what was checked
    async for task in tasks.Watch(tasks_pb2.WatchTaskRequest(id=task_id), metadata=dev):
        last = task
    assert tasks_pb2.TaskState.Name(last.state) == "SUCCESS"
    result = json_format.MessageToDict(last.result)
    assert result["status"] == "succeeded" and result["outputs"] == {"answer": ECHO}
    run = await stub.GetWorkflowRun(pb.GetWorkflowRunRequest(name=result["run"]), metadata=dev)
    assert run.status == "succeeded"
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # bad inputs: refused at submit
        await stub.SubmitWorkflowRun(pb.RunWorkflowRequest(name="workflows/rag"), metadata=dev)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_secrets_are_write_only_and_audited_without_their_value(
    stub: app_pb2_grpc.AppStub, dev: Meta, other: Meta, gateway: Gateway
) -> None:
    made = await stub.SetSecret(
        pb.SetSecretRequest(name="api_token", value="s3cr3t-value"), metadata=dev
    )
    assert made.name == "secrets/api_token"
    listed = await stub.ListSecrets(pb.ListSecretsRequest(), metadata=dev)
    assert [s.name for s in listed.secrets] == ["secrets/api_token"]
    assert "s3cr3t" not in str(listed)
    assert list((await stub.ListSecrets(pb.ListSecretsRequest(), metadata=other)).secrets) == []
    assert await gateway.apps.store.secrets.reveal("acme", ["api_token"]) == {
        "api_token": "s3cr3t-value"
    }
    async with gateway.apps.store.engine.connect() as conn:
        from sqlalchemy import text

        stored = (await conn.execute(text("SELECT ciphertext FROM secrets"))).scalar_one()
    assert "s3cr3t" not in stored
    audit = await stub.ListAuditEvents(
        pb.ListAuditEventsRequest(resource="tenants/acme/secrets/api_token"),
        metadata=admin(gateway),
    )
    assert [e.action for e in audit.events] == ["SetSecret"] and "s3cr3t" not in str(audit)
    await stub.DeleteSecret(pb.DeleteSecretRequest(name="secrets/api_token"), metadata=dev)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.DeleteSecret(pb.DeleteSecretRequest(name="secrets/api_token"), metadata=dev)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_node_types_carry_their_config_schemas(
    stub: app_pb2_grpc.AppStub, user: Meta
) -> None:
    types = {
        t.type: t
        for t in (await stub.ListNodeTypes(pb.ListNodeTypesRequest(), metadata=user)).node_types
    }
    assert set(types) == {
        "start", "end", "answer", "llm", "retrieval", "template", "if_else", "http_request",
        "map", "aggregate", "classifier", "extractor", "expression", "task",
    }  # fmt: skip
    llm = json_format.MessageToDict(types["llm"].config_schema)
    assert llm["required"] == ["model", "messages"] and types["llm"].streams
    assert types["if_else"].branches and not types["template"].branches


async def test_rest_create_and_run_with_sse(gateway: Gateway, dev: Meta) -> None:
    headers = {"authorization": dev[0][1]}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.http_port}", headers=headers
    ) as http:
        made = await http.post(
            "/v1/workflows", params={"workflowId": "rag"}, json={"definition": RAG}
        )
        assert made.status_code == 200, made.text
        assert made.json()["name"] == "workflows/rag"
        bad = await http.post("/v1/workflows:validate", json={"definition": {"nodes": []}})
        assert bad.status_code == 200 and not bad.json().get("valid")  # false: left out
        assert bad.json()["problems"][0]["field"] == "nodes"
        reply = await http.post(
            "/v1/workflows/rag:run", json={"inputs": {"question": "leave"}},
            headers={"accept": "text/event-stream"},
        )  # fmt: skip
        assert reply.headers["content-type"].startswith("text/event-stream")
        frames = [
            json.loads(f[len("data: ") :])["result"] for f in reply.text.strip().split("\n\n")
        ]
        assert "runStarted" in frames[0] and frames[-1]["runFinished"]["status"] == "succeeded"
        text = "".join(f["textDelta"]["text"] for f in frames if "textDelta" in f)
        assert text == ECHO
        unary = await http.post("/v1/workflows/rag:runUnary", json={"inputs": {"question": "x"}})
        assert unary.status_code == 200 and unary.json()["status"] == "succeeded"
        missing = await http.post("/v1/workflows/nope:run", json={})
        assert missing.status_code == 404
        types = await http.get("/v1/workflows:nodeTypes")
        assert types.status_code == 200 and len(types.json()["nodeTypes"]) >= 14


# --- golden workflows, end to end over gRPC ------------------------------------------------

PARALLEL: dict[str, Any] = {
    "inputs": {"topic": "string", "items": {"type": "array"}},
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "a", "type": "llm", "config": {"model": "paced", "messages": [
            {"role": "user", "content": "alpha {{ start.topic }}"}]}},
        {"id": "b", "type": "llm", "config": {"model": "paced", "messages": [
            {"role": "user", "content": "beta {{ start.topic }}"}]}},
        {"id": "merge", "type": "template", "config": {"template": "{{ a.text }} | {{ b.text }}"}},
        {"id": "each", "type": "map", "config": {
            "items": "{{ start.items }}", "concurrency": 2,
            "nodes": [{"id": "up", "type": "template",
                       "config": {"template": "{{ each.item | upper }}"}}],
            "output": "{{ up.text }}"}},
        {"id": "end", "type": "end", "config": {"outputs": {
            "merged": "{{ merge.text }}", "upper": "{{ each.results }}"}}},
    ],
    "edges": [
        {"from": "start", "to": "a"}, {"from": "start", "to": "b"}, {"from": "start", "to": "each"},
        {"from": "a", "to": "merge"}, {"from": "b", "to": "merge"},
        {"from": "merge", "to": "end"}, {"from": "each", "to": "end"},
    ],
}  # fmt: skip


async def test_parallel_calls_merged_and_a_map(stub: app_pb2_grpc.AppStub, dev: Meta) -> None:
    await create(stub, dev, "parallel", PARALLEL)
    got = await events(stub, dev, "workflows/parallel", topic="sky", items=["x", "y", "z"])
    order = [(e.WhichOneof("event"), e.node_started.node or e.node_finished.node) for e in got]
    # both model calls were in flight together: each started before either finished
    first_done = min(order.index(("node_finished", n)) for n in ("a", "b"))
    assert max(order.index(("node_started", n)) for n in ("a", "b")) < first_done
    outputs = json_format.MessageToDict(got[-1].run_finished.outputs)
    assert outputs["upper"] == ["X", "Y", "Z"]
    a_text, b_text = outputs["merged"].split(" | ")
    assert a_text.startswith("alpha sky") and b_text.startswith("beta sky")


def failing(on_error: str) -> dict[str, Any]:
    reply: dict[str, Any] = {"id": "reply", "type": "llm", "config": {
        "model": "broken", "messages": [{"role": "user", "content": "hi"}]}}  # fmt: skip
    edges = [{"from": "start", "to": "reply"}, {"from": "reply", "to": "ok"}]
    if on_error == "branch":
        reply["on_error"] = "branch"
        edges.append({"from": "reply", "to": "sorry", "branch": "error"})
    nodes = [
        {"id": "start", "type": "start"}, reply,
        {"id": "ok", "type": "answer", "config": {"text": "{{ reply.text }}"}},
        {"id": "sorry", "type": "answer", "config": {"text": "Sorry ({{ reply.error }})"}},
    ]  # fmt: skip
    if on_error != "branch":
        nodes.pop()
    return {"nodes": nodes, "edges": edges}


async def test_a_failing_branch_fails_the_run_unless_it_has_an_error_edge(
    stub: app_pb2_grpc.AppStub, dev: Meta
) -> None:
    await create(stub, dev, "fails", failing("fail"))
    done = (await events(stub, dev, "workflows/fails"))[-1].run_finished
    assert (done.status, done.error_node) == ("failed", "reply")
    assert "all deployments of 'broken' failed" in done.error
    await create(stub, dev, "recovers", failing("branch"))
    got = await events(stub, dev, "workflows/recovers")
    finished = {
        e.node_finished.node: e.node_finished.status for e in got if e.HasField("node_finished")
    }
    assert finished == {
        "start": "succeeded",
        "reply": "failed",
        "ok": "skipped",
        "sorry": "succeeded",
    }
    answer = json_format.MessageToDict(got[-1].run_finished.outputs)["answer"]
    assert got[-1].run_finished.status == "succeeded" and answer.startswith(
        "Sorry (all deployments"
    )


async def test_cancelling_a_run_cancels_the_upstream_call(
    stub: app_pb2_grpc.AppStub, dev: Meta, gateway: Gateway
) -> None:
    await create(stub, dev, "slow", SLOW)
    mock = gateway.router.model("slow").deployments[0].provider
    call = stub.RunWorkflow(pb.RunWorkflowRequest(name="workflows/slow"), metadata=dev)
    async for event in call:
        if event.HasField("node_started") and event.node_started.node == "wait":
            break
    for _ in range(100):  # the node has started; its model call follows at once
        if mock.active_streams:
            break
        await asyncio.sleep(0.01)
    assert mock.active_streams == 1
    call.cancel()
    for _ in range(100):
        if mock.cancelled_streams:
            break
        await asyncio.sleep(0.01)
    assert (mock.active_streams, mock.cancelled_streams) == (0, 1)


def fetch(url: str) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "get", "type": "http_request", "config": {"url": url}},
            {"id": "end", "type": "end", "config": {"outputs": {"body": "{{ get.json }}"}}},
        ],
        "edges": [{"from": "start", "to": "get"}, {"from": "get", "to": "end"}],
    }


@pytest.fixture
async def local_api() -> AsyncIterator[str]:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hello": "workflow"})

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/hello"
    await runner.cleanup()


async def test_http_request_to_loopback_is_refused_by_default(
    stub: app_pb2_grpc.AppStub, dev: Meta, local_api: str
) -> None:
    await create(stub, dev, "fetch", fetch(local_api))
    done = (await events(stub, dev, "workflows/fetch"))[-1].run_finished
    assert (done.status, done.error_node) == ("failed", "get")
    assert "127.0.0.1 is a loopback address" in done.error


async def test_http_request_reaches_a_local_server_when_allowed(
    start_gateway: StartGateway, tmp_path: Path, local_api: str
) -> None:
    top = secure_top(tmp_path, workflows={"http_allow_private": True})
    gw = await start_gateway(MODELS, top=top)
    async with grpc.aio.insecure_channel(gw.address) as channel:
        stub = app_pb2_grpc.AppStub(channel)
        meta = bearer(await new_key(channel, gw, "acme", "developer"))
        await create(stub, meta, "fetch", fetch(local_api))
        done = (await events(stub, meta, "workflows/fetch"))[-1].run_finished
    assert done.status == "succeeded", done.error
    assert json_format.MessageToDict(done.outputs) == {"body": {"hello": "workflow"}}


async def test_a_workflow_made_again_runs_its_new_definition(
    stub: app_pb2_grpc.AppStub, dev: Meta
) -> None:
    def saying(text: str) -> dict[str, Any]:
        return {
            "nodes": [{"id": "start", "type": "start"},
                      {"id": "say", "type": "answer", "config": {"text": text}}],
            "edges": [{"from": "start", "to": "say"}],
        }  # fmt: skip

    await create(stub, dev, "hello", saying("first"))
    first = (await events(stub, dev, "workflows/hello"))[-1].run_finished
    await stub.DeleteWorkflow(pb.DeleteWorkflowRequest(name="workflows/hello"), metadata=dev)
    await create(stub, dev, "hello", saying("second"))  # version 1 again
    second = (await events(stub, dev, "workflows/hello"))[-1].run_finished
    assert json_format.MessageToDict(first.outputs) == {"answer": "first"}
    assert json_format.MessageToDict(second.outputs) == {"answer": "second"}
