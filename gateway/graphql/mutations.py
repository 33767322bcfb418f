"""The writes GraphQL offers: run a workflow, submit and cancel a task. Every
other write stays on REST and gRPC."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.graphql.context import GraphContext
from gateway.graphql.convert import struct
from gateway.graphql.rpcs import APP, TASKS
from gateway.graphql.tasks import Task
from gateway.graphql.workflows import WorkflowRun
from gateway.pb import app_pb2, tasks_pb2


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Runs it to the end (version 0: the published one)")
    async def run_workflow(
        self,
        info: Info[GraphContext, None],
        name: str,
        version: int = 0,
        inputs: JSON | None = None,
    ) -> WorkflowRun:
        request = app_pb2.RunWorkflowRequest(
            name=name, version=version, inputs=struct(inputs, "inputs")
        )
        return WorkflowRun.from_pb(await info.context.unary(APP["RunWorkflowUnary"], request))

    @strawberry.mutation(description="Queues it; the same idempotencyKey returns the same task")
    async def submit_task(
        self,
        info: Info[GraphContext, None],
        type: str,
        payload: JSON | None = None,
        idempotency_key: str = "",
    ) -> Task:
        request = tasks_pb2.SubmitTaskRequest(
            type=type, payload=struct(payload, "payload"), idempotency_key=idempotency_key
        )
        return Task.from_pb(await info.context.unary(TASKS["Submit"], request))

    @strawberry.mutation(description="Cancels a pending or retrying task")
    async def cancel_task(self, info: Info[GraphContext, None], id: str) -> Task:
        request = tasks_pb2.CancelTaskRequest(id=id)
        return Task.from_pb(await info.context.unary(TASKS["Cancel"], request))
