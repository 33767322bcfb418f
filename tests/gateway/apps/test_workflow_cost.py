"""Model calls made outside the access interceptor cost what the access path
charges: a workflow's llm node and a task worker's batch calls are priced at
the live router's PriceBook, on their usage records (QueryUsage sums them)
and in `infergate_cost_usd`, and they draw on the caller's budgets; a spent
budget refuses RunWorkflow before the run starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from prometheus_client import REGISTRY

from gateway.apps.model import UsageQuery
from gateway.pb import app_pb2 as pb
from gateway.pb import app_pb2_grpc, tasks_pb2, tasks_pb2_grpc
from gateway.server import Gateway
from tests.conftest import StartGateway
from tests.gateway.apps.test_auth import admin, secure_top
from tests.gateway.apps.test_quota import key

# USD per million tokens: input 1, output 2; the mock counts words as tokens.
PRICE = {"input": 1.0, "output": 2.0}
MODELS: dict[str, Any] = {
    "chat": {"deployments": [{"name": "chat-a", "provider": "mock", "model": "echo?tokens=8",
                              "price": PRICE}]},
}  # fmt: skip
# "hello world": 2 input tokens, 8 output tokens.
ONE_CALL = 2 * 1000 + 8 * 2000  # nano-dollars
ASK: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "start"},
        {"id": "ask", "type": "llm",
         "config": {"model": "chat", "messages": [{"role": "user", "content": "hello world"}]}},
        {"id": "again", "type": "llm",
         "config": {"model": "chat", "messages": [{"role": "user", "content": "hello world"}]}},
    ],
    "edges": [{"from": "start", "to": "ask"}, {"from": "ask", "to": "again"}],
}  # fmt: skip


def cost_metric() -> float:
    labels = {"tenant": "acme", "model": "chat", "deployment": "chat-a"}
    return REGISTRY.get_sample_value("infergate_cost_usd_total", labels) or 0.0


@pytest.fixture
async def gateway(start_gateway: StartGateway, tmp_path: Path) -> Gateway:
    return await start_gateway(MODELS, top=secure_top(tmp_path))


async def save(apps: app_pb2_grpc.AppStub, meta: Any, workflow_id: str = "ask") -> None:
    definition = struct_pb2.Struct()
    definition.update(ASK)
    workflow = pb.Workflow(definition=definition)
    await apps.CreateWorkflow(
        pb.CreateWorkflowRequest(workflow_id=workflow_id, workflow=workflow), metadata=meta
    )


async def rows(gateway: Gateway, *group_by: str) -> dict[str, Any]:
    assert gateway.apps is not None and gateway.apps.recorder is not None
    await gateway.apps.recorder.flush()
    found = await gateway.apps.store.usage.query(UsageQuery(0, 2**62, group_by))
    return {r.group[group_by[0]]: r for r in found}


async def test_a_workflow_runs_llm_calls_at_the_deployments_price(gateway: Gateway) -> None:
    dev = await key(gateway, "acme", "developer")
    before = cost_metric()
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        apps = app_pb2_grpc.AppStub(ch)
        await save(apps, dev)
        events = [e async for e in apps.RunWorkflow(pb.RunWorkflowRequest(name="workflows/ask"),
                                                    metadata=dev)]  # fmt: skip
        assert events[-1].run_finished.status == "succeeded"
        by_app = await rows(gateway, "app", "deployment")  # flushed: QueryUsage reads them
        totals = await apps.QueryUsage(pb.QueryUsageRequest(group_by=["app"]), metadata=dev)
    row_ = by_app["workflows/ask"]
    assert (row_.requests, row_.input_tokens, row_.output_tokens) == (2, 4, 16)
    assert row_.cost_nanos == 2 * ONE_CALL and row_.group["deployment"] == "chat-a"
    assert cost_metric() - before == pytest.approx(2 * ONE_CALL / 1e9)
    [row] = [r for r in totals.rows if r.group["app"] == "workflows/ask"]
    assert row.cost_usd == pytest.approx(2 * ONE_CALL / 1e9)


async def test_a_spent_tenant_budget_refuses_run_workflow_naming_it(gateway: Gateway) -> None:
    dev = await key(gateway, "acme", "developer")
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        apps = app_pb2_grpc.AppStub(ch)
        await save(apps, dev)
        # Less than one run's two calls: the first run is admitted and spends it.
        budget = pb.Budget(name="tenants/acme", limit_usd=ONE_CALL / 1e9, period="daily")
        await apps.SetBudget(pb.SetBudgetRequest(budget=budget), metadata=admin(gateway))
        run = pb.RunWorkflowRequest(name="workflows/ask")
        first = [e async for e in apps.RunWorkflow(run, metadata=dev)]
        assert first[-1].run_finished.status == "succeeded"
        assert gateway.apps is not None and gateway.apps.spend is not None
        [(spent, _)] = await gateway.apps.spend.spent(await gateway.apps.store.budgets.list("acme"))
        assert spent == 2 * ONE_CALL  # each call settled at its real cost
        refusals = {"scope": "tenant"}
        before = REGISTRY.get_sample_value("infergate_budget_refusals_total", refusals) or 0
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            [e async for e in apps.RunWorkflow(run, metadata=dev)]
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "budget tenants/acme ($0.00 daily) is spent; it resets at " in str(
            refused.value.details()
        )
        assert float(dict(refused.value.trailing_metadata())["retry-after"]) > 0
        assert REGISTRY.get_sample_value("infergate_budget_refusals_total", refusals) == before + 1
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await apps.RunWorkflowUnary(run, metadata=dev)
        assert unary.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.aio.AioRpcError) as submitted:
            await apps.SubmitWorkflowRun(run, metadata=dev)
        assert submitted.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        runs = await apps.ListWorkflowRuns(pb.ListWorkflowRunsRequest(name="workflows/ask"),
                                           metadata=dev)  # fmt: skip
    assert len(runs.runs) == 1  # a refused run leaves no record


async def test_a_workflows_app_budget_caps_only_that_workflow(gateway: Gateway) -> None:
    dev = await key(gateway, "acme", "developer")
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        apps = app_pb2_grpc.AppStub(ch)
        await save(apps, dev, "ask")
        await save(apps, dev, "other")
        name = "tenants/acme/apps/workflows/ask"
        budget = pb.Budget(name=name, limit_usd=ONE_CALL / 1e9, period="none")
        saved = await apps.SetBudget(pb.SetBudgetRequest(budget=budget), metadata=admin(gateway))
        assert saved.name == name
        for workflow in ("ask", "other"):
            run = pb.RunWorkflowRequest(name=f"workflows/{workflow}")
            assert [e async for e in apps.RunWorkflow(run, metadata=dev)][-1].run_finished.status
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            [e async for e in apps.RunWorkflow(pb.RunWorkflowRequest(name="workflows/ask"),
                                               metadata=dev)]  # fmt: skip
        assert f"budget {name} " in str(refused.value.details())
        again = [e async for e in apps.RunWorkflow(pb.RunWorkflowRequest(name="workflows/other"),
                                                   metadata=dev)]  # fmt: skip
    assert again[-1].run_finished.status == "succeeded"


async def test_a_task_workers_model_calls_are_priced_and_charged(gateway: Gateway) -> None:
    user = await key(gateway, "acme")
    before = cost_metric()
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        apps, tasks = app_pb2_grpc.AppStub(ch), tasks_pb2_grpc.TasksStub(ch)
        budget = pb.Budget(name="tenants/acme", limit_usd=1, period="daily")
        await apps.SetBudget(pb.SetBudgetRequest(budget=budget), metadata=admin(gateway))
        payload = struct_pb2.Struct()
        payload.update({"model": "chat", "prompts": ["hello world", "hello world"]})
        task = await tasks.Submit(
            tasks_pb2.SubmitTaskRequest(type="generate.batch", payload=payload), metadata=user
        )
        seen = [t async for t in tasks.Watch(tasks_pb2.WatchTaskRequest(id=task.id), metadata=user)]
        last = seen[-1]
        assert tasks_pb2.TaskState.Name(last.state) == "SUCCESS"
        assert json_format.MessageToDict(last.result)["usage"]["output_tokens"] == 16
        listed = await apps.ListBudgets(pb.ListBudgetsRequest(tenant="tenants/acme"),
                                        metadata=admin(gateway))  # fmt: skip
    by_app = await rows(gateway, "app")
    assert (by_app[""].requests, by_app[""].cost_nanos) == (2, 2 * ONE_CALL)  # no app: tasks
    assert cost_metric() - before == pytest.approx(2 * ONE_CALL / 1e9)
    [mine] = listed.budgets
    assert mine.spent_usd == pytest.approx(2 * ONE_CALL / 1e9)
