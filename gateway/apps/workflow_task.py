"""`workflow.run`: a workflow run as a task on the task queue (SubmitWorkflowRun).

The result is the run's summary; the run's full record is in GetWorkflowRun.
A workflow or inputs that are no longer valid fail the task for good; a run
that fails inside (a node failed) is a result with status "failed", not a
task failure, so it is not retried. A run refused because a budget of its
tenant or its workflow is spent fails the task for good.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from gateway.apps.spend import BudgetSpent
from gateway.apps.workflow_runner import WorkflowRunner
from gateway.apps.workflows.events import RunFinished, RunStarted
from gateway.errors import FailedPrecondition, InvalidArgument, NotFound
from gateway.tasks.errors import InvalidTask, TaskFailed
from gateway.tasks.handlers import TaskContext, TaskType

NAME = "workflow.run"


def validate(payload: Mapping[str, Any]) -> None:
    if not isinstance(payload.get("workflow"), str) or not payload["workflow"]:
        raise InvalidTask("payload.workflow", "must name a workflow")
    version = payload.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise InvalidTask("payload.version", "must be an integer >= 0 (0: the published one)")
    if not isinstance(payload.get("inputs", {}), Mapping):
        raise InvalidTask("payload.inputs", "must be an object")


def task_type(runner: WorkflowRunner) -> TaskType:
    async def run(ctx: TaskContext, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        tenant = ctx.task.tenant
        try:
            saved, definition, inputs = await runner.prepare(
                tenant, payload["workflow"], int(payload.get("version", 0)),
                payload.get("inputs", {}),
            )  # fmt: skip
        except (NotFound, InvalidArgument, FailedPrecondition) as exc:
            raise TaskFailed(str(exc), retryable=False) from None
        summary: dict[str, Any] = {}
        events = runner.run(tenant, "", saved, definition, inputs, None)
        try:
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    if isinstance(event, RunStarted):
                        summary["run"] = f"workflows/{saved.workflow}/runs/{event.run_id}"
                        summary["version"] = saved.version
                    elif isinstance(event, RunFinished):
                        summary.update(
                            status=event.status, outputs=dict(event.outputs), error=event.error,
                            usage={"input_tokens": event.usage.input_tokens,
                                   "output_tokens": event.usage.output_tokens},
                        )  # fmt: skip
        except BudgetSpent as exc:
            raise TaskFailed(str(exc), retryable=False) from None
        return summary

    return TaskType(NAME, run, validate)
