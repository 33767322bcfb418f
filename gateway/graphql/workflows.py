"""Workflows, their versions' documents and their runs."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.graphql.context import GraphContext
from gateway.graphql.convert import json_of, time_of
from gateway.graphql.pagination import DEFAULT_FIRST, Connection, Page
from gateway.graphql.rpcs import APP
from gateway.graphql.usage import TokenUsage
from gateway.pb import app_pb2 as pb


@strawberry.type
class NodeRun:
    node: str
    type: str
    status: str = strawberry.field(description='"succeeded", "failed" or "skipped"')
    inputs: JSON | None
    outputs: JSON | None
    error: str
    latency_ms: int
    usage: TokenUsage
    branch: str
    attempts: int

    @classmethod
    def from_pb(cls, n: pb.WorkflowNodeRun) -> NodeRun:
        return cls(
            node=n.node, type=n.type, status=n.status, inputs=json_of(n, "inputs"),
            outputs=json_of(n, "outputs"), error=n.error, latency_ms=n.latency_ms,
            usage=TokenUsage.from_pb(n.usage), branch=n.branch, attempts=n.attempts,
        )  # fmt: skip


@strawberry.type
class WorkflowRun:
    name: str
    version: int
    status: str = strawberry.field(description='"running", "succeeded", "failed", "cancelled"')
    inputs: JSON | None
    outputs: JSON | None
    error: str
    usage: TokenUsage
    start_time: datetime | None
    end_time: datetime | None
    nodes: list[NodeRun] = strawberry.field(description="Empty in a listing of runs")

    @classmethod
    def from_pb(cls, r: pb.WorkflowRun) -> WorkflowRun:
        return cls(
            name=r.name, version=r.version, status=r.status, inputs=json_of(r, "inputs"),
            outputs=json_of(r, "outputs"), error=r.error, usage=TokenUsage.from_pb(r.usage),
            start_time=time_of(r, "start_time"), end_time=time_of(r, "end_time"),
            nodes=[NodeRun.from_pb(n) for n in r.nodes],
        )  # fmt: skip


@strawberry.type
class Workflow:
    name: str
    display_name: str
    description: str
    definition: JSON | None = strawberry.field(description="Null in a listing of workflows")
    version: int
    latest_version: int
    published_version: int
    create_time: datetime | None
    update_time: datetime | None

    @classmethod
    def from_pb(cls, w: pb.Workflow) -> Workflow:
        return cls(
            name=w.name, display_name=w.display_name, description=w.description,
            definition=json_of(w, "definition"), version=w.version,
            latest_version=w.latest_version, published_version=w.published_version,
            create_time=time_of(w, "create_time"), update_time=time_of(w, "update_time"),
        )  # fmt: skip

    @strawberry.field(description="Newest first (role developer)")
    async def runs(
        self, info: Info[GraphContext, None], first: int = DEFAULT_FIRST, after: str | None = None
    ) -> Connection[WorkflowRun]:
        page = Page.of(first, after)
        request = pb.ListWorkflowRunsRequest(
            name=self.name, page_size=page.size, page_token=page.token
        )
        reply = await info.context.unary(APP["ListWorkflowRuns"], request)
        return page.connection(reply.runs, reply.next_page_token, WorkflowRun.from_pb)


@strawberry.type
class WorkflowQueries:
    @strawberry.field
    async def workflows(
        self, info: Info[GraphContext, None], first: int = DEFAULT_FIRST, after: str | None = None
    ) -> Connection[Workflow]:
        page = Page.of(first, after)
        request = pb.ListWorkflowsRequest(page_size=page.size, page_token=page.token)
        reply = await info.context.unary(APP["ListWorkflows"], request)
        return page.connection(reply.workflows, reply.next_page_token, Workflow.from_pb)

    @strawberry.field(description='"workflows/{id}" at `version` (0: the latest)')
    async def workflow(
        self, info: Info[GraphContext, None], name: str, version: int = 0
    ) -> Workflow:
        request = pb.GetWorkflowRequest(name=name, version=version)
        return Workflow.from_pb(await info.context.unary(APP["GetWorkflow"], request))

    @strawberry.field(description='"workflows/{id}/runs/{run}", with its nodes')
    async def workflow_run(self, info: Info[GraphContext, None], name: str) -> WorkflowRun:
        request = pb.GetWorkflowRunRequest(name=name)
        return WorkflowRun.from_pb(await info.context.unary(APP["GetWorkflowRun"], request))
