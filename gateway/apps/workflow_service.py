"""The App service's workflow and secret RPCs: decode -> WorkflowRunner /
Secrets -> encode. Mixed into AppService (gateway/apps/service.py).

Workflows and runs are the caller's tenant's: another tenant's answers
NOT_FOUND. A definition with problems answers INVALID_ARGUMENT naming the
first (node and field) and how many more; ValidateWorkflow lists them all.
RunWorkflow checks the inputs before it streams; a run that fails inside
(a node failed) ends with run_finished status "failed", the call itself OK.
RunWorkflow, RunWorkflowUnary and SubmitWorkflowRun answer RESOURCE_EXHAUSTED,
naming the budget, when a budget of the caller (tenant, key, or app
`workflows/<id>`) is spent.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from gateway import identity
from gateway.apps import wire
from gateway.apps import workflow_runner as workflows
from gateway.apps.catalog import actor, check_id
from gateway.apps.store.secrets import Secrets
from gateway.apps.workflow_runner import WorkflowRunner
from gateway.apps.workflows.events import (
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
    TextDelta,
)
from gateway.apps.workflows.model import RunRecord
from gateway.apps.workflows.nodes import TYPES
from gateway.errors import FailedPrecondition, GatewayError, InvalidArgument, NotFound
from gateway.pb import app_pb2 as pb
from gateway.rpc import deadline, from_struct, paged
from gateway.status import abort, translated
from gateway.tasks.queue import TaskQueue
from router.errors import RouterError

WORKFLOW_TASK = "workflow.run"


def _run_name(name: str) -> tuple[str, str]:
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "workflows" or parts[2] != "runs" or not all(parts):
        raise InvalidArgument("name", f"must be workflows/{{id}}/runs/{{run}}, got {name!r}")
    return parts[1], parts[3]


class WorkflowMethods:
    """Needs `_runner`, `_secrets` and `_queue` set by the service."""

    _runner: WorkflowRunner
    _secrets: Secrets
    _queue: TaskQueue | None

    @translated
    async def CreateWorkflow(self, request: pb.CreateWorkflowRequest, context: Any) -> pb.Workflow:
        w = request.workflow
        workflow_id = check_id(request.workflow_id, "workflow_id")
        saved, version = await self._runner.create(
            identity.current().tenant, workflow_id, w.display_name, w.description,
            _definition(w), actor(),
        )  # fmt: skip
        return wire.workflow_to_pb(saved, version)

    @translated
    async def UpdateWorkflow(self, request: pb.UpdateWorkflowRequest, context: Any) -> pb.Workflow:
        w = request.workflow
        workflow_id = wire.name_id(w.name, "workflows", "workflow.name")
        saved, version = await self._runner.save(
            identity.current().tenant, workflow_id, _definition(w), actor(),
            w.display_name or None, w.description or None,
        )  # fmt: skip
        return wire.workflow_to_pb(saved, version)

    @translated
    async def GetWorkflow(self, request: pb.GetWorkflowRequest, context: Any) -> pb.Workflow:
        workflow_id = wire.name_id(request.name, "workflows", "name")
        tenant = identity.current().tenant
        workflow = await self._runner.workflows.get(tenant, workflow_id)
        if request.version < 0:
            raise InvalidArgument("version", f"must be >= 0, got {request.version}")
        number = request.version or workflow.latest_version
        return wire.workflow_to_pb(
            workflow, await self._runner.workflows.version(tenant, workflow_id, number)
        )

    @translated
    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: Any
    ) -> pb.ListWorkflowsResponse:
        limit = wire.page_size(request.page_size)
        found = await self._runner.workflows.list(
            identity.current().tenant, limit + 1, request.page_token
        )
        workflows, token = paged(found, limit, lambda w: w.id)
        return pb.ListWorkflowsResponse(
            workflows=[wire.workflow_to_pb(w) for w in workflows], next_page_token=token
        )

    @translated
    async def ListWorkflowVersions(
        self, request: pb.ListWorkflowVersionsRequest, context: Any
    ) -> pb.ListWorkflowVersionsResponse:
        workflow_id = wire.name_id(request.name, "workflows", "name")
        limit = wire.page_size(request.page_size)
        try:
            before = int(request.page_token or 0)
        except ValueError:
            raise InvalidArgument("page_token", "not a token this service issued") from None
        found = await self._runner.workflows.versions(
            identity.current().tenant, workflow_id, limit + 1, before
        )
        versions, token = paged(found, limit, lambda v: str(v.version))
        return pb.ListWorkflowVersionsResponse(
            versions=[wire.version_to_pb(v) for v in versions], next_page_token=token
        )

    @translated
    async def PublishWorkflow(
        self, request: pb.PublishWorkflowRequest, context: Any
    ) -> pb.Workflow:
        workflow_id = wire.name_id(request.name, "workflows", "name")
        if request.version <= 0:
            raise InvalidArgument(
                "version", f"must be a saved version (>= 1), got {request.version}"
            )
        tenant = identity.current().tenant
        published = await self._runner.workflows.publish(
            tenant, workflow_id, request.version, actor()
        )
        return wire.workflow_to_pb(
            published, await self._runner.workflows.version(tenant, workflow_id, request.version)
        )

    @translated
    async def DeleteWorkflow(
        self, request: pb.DeleteWorkflowRequest, context: Any
    ) -> empty_pb2.Empty:
        workflow_id = wire.name_id(request.name, "workflows", "name")
        await self._runner.delete(identity.current().tenant, workflow_id, actor())
        return empty_pb2.Empty()

    @translated
    async def ValidateWorkflow(
        self, request: pb.ValidateWorkflowRequest, context: Any
    ) -> pb.ValidateWorkflowResponse:
        found = workflows.problems(from_struct(request.definition))
        return pb.ValidateWorkflowResponse(
            valid=not found,
            problems=[
                pb.WorkflowProblem(node=p.node, field=p.field, message=p.message) for p in found
            ],
        )

    @translated
    async def ListNodeTypes(
        self, request: pb.ListNodeTypesRequest, context: Any
    ) -> pb.ListNodeTypesResponse:
        return pb.ListNodeTypesResponse(
            node_types=[wire.node_type_to_pb(t) for t in TYPES.values()]
        )

    async def RunWorkflow(
        self, request: pb.RunWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WorkflowEvent]:
        try:
            principal = identity.current()
            saved, definition, inputs = await self._prepare(request)
            events = self._runner.run(
                principal.tenant, principal.key_id or "", saved, definition, inputs,
                deadline(context),
            )  # fmt: skip
            async with contextlib.aclosing(events) as stream:
                run_id = ""
                async for event in stream:
                    msg = pb.WorkflowEvent(run_id=run_id)
                    if isinstance(event, RunStarted):
                        run_id = msg.run_id = event.run_id
                        msg.run_started.workflow = f"workflows/{saved.workflow}"
                        msg.run_started.version = saved.version
                    elif isinstance(event, NodeStarted):
                        msg.node_started.node, msg.node_started.type = event.node, event.type
                    elif isinstance(event, TextDelta):
                        msg.text_delta.node, msg.text_delta.text = event.node, event.text
                    elif isinstance(event, NodeFinished):
                        msg.node_finished.CopyFrom(wire.node_run_to_pb(event))
                    elif isinstance(event, RunFinished):
                        msg.run_finished.CopyFrom(wire.run_finished_to_pb(event))
                    yield msg
        except (GatewayError, RouterError) as exc:
            await abort(context, exc)

    @translated
    async def RunWorkflowUnary(
        self, request: pb.RunWorkflowRequest, context: Any
    ) -> pb.WorkflowRun:
        principal = identity.current()
        saved, definition, inputs = await self._prepare(request)
        records: list[RunRecord] = []
        events = self._runner.run(
            principal.tenant, principal.key_id or "", saved, definition, inputs,
            deadline(context), on_record=records.append,
        )  # fmt: skip
        async with contextlib.aclosing(events) as stream:
            async for _ in stream:
                pass
        return wire.run_to_pb(records[0])  # what the store holds, without reading it back

    @translated
    async def SubmitWorkflowRun(
        self, request: pb.RunWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmittedWorkflowRun:
        queue = self._queue
        if queue is None:
            raise FailedPrecondition("this gateway runs no task queue (tasks.backend: none)")
        saved, _, _ = await self._prepare(request)  # bad input is refused now, not later
        principal = identity.current()
        await self._runner.admit(principal.tenant, principal.key_id or "", saved.workflow)
        payload = {
            "workflow": saved.workflow,
            "version": saved.version,  # the one checked, whatever is published meanwhile
            "inputs": from_struct(request.inputs),
        }
        task = await queue.submit(principal.tenant, WORKFLOW_TASK, payload)
        await context.send_initial_metadata(
            (("x-http-code", "202"), ("location", f"/v1/tasks/{task.id}"))
        )
        return pb.SubmittedWorkflowRun(task=f"tasks/{task.id}")

    @translated
    async def ListWorkflowRuns(
        self, request: pb.ListWorkflowRunsRequest, context: Any
    ) -> pb.ListWorkflowRunsResponse:
        workflow_id = wire.name_id(request.name, "workflows", "name")
        tenant = identity.current().tenant
        await self._runner.workflows.get(tenant, workflow_id)  # NOT_FOUND for another tenant's
        limit = wire.page_size(request.page_size)
        found = await self._runner.runs.list(tenant, workflow_id, limit + 1, request.page_token)
        runs, token = paged(found, limit, lambda r: r.id)
        return pb.ListWorkflowRunsResponse(
            runs=[wire.run_to_pb(r, with_nodes=False) for r in runs], next_page_token=token
        )

    @translated
    async def GetWorkflowRun(
        self, request: pb.GetWorkflowRunRequest, context: Any
    ) -> pb.WorkflowRun:
        workflow_id, run_id = _run_name(request.name)
        run = await self._runner.runs.get(identity.current().tenant, run_id)
        if run.workflow != workflow_id:
            raise NotFound(f"run {request.name!r}")
        return wire.run_to_pb(run)

    @translated
    async def SetSecret(self, request: pb.SetSecretRequest, context: Any) -> pb.Secret:
        info = await self._secrets.put(
            identity.current().tenant, request.name, request.value, actor()
        )
        return wire.secret_to_pb(info)

    @translated
    async def ListSecrets(
        self, request: pb.ListSecretsRequest, context: Any
    ) -> pb.ListSecretsResponse:
        found = await self._secrets.list(identity.current().tenant)
        return pb.ListSecretsResponse(secrets=[wire.secret_to_pb(s) for s in found])

    @translated
    async def DeleteSecret(self, request: pb.DeleteSecretRequest, context: Any) -> empty_pb2.Empty:
        name = wire.name_id(request.name, "secrets", "name")
        await self._secrets.delete(identity.current().tenant, name, actor())
        return empty_pb2.Empty()

    async def _prepare(self, request: pb.RunWorkflowRequest) -> Any:
        workflow_id = wire.name_id(request.name, "workflows", "name")
        inputs = from_struct(request.inputs)
        return await self._runner.prepare(
            identity.current().tenant, workflow_id, request.version, inputs
        )


def _definition(w: pb.Workflow) -> dict[str, Any]:
    if not w.HasField("definition"):
        raise InvalidArgument("workflow.definition", "is required")
    return from_struct(w.definition)
