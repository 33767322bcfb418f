"""`task`: hand a long step to the gateway's task queue, and wait for it.

    type: dataset.ingest          # a task type name
    payload: {collection: "{{ start.collection }}"}   # strings are templates
    wait: true                    # false: submit and go on (state PENDING)

With `wait`, the node ends when the task does: `result` holds its result, and
a task that fails (or is cancelled, or dead-lettered) fails the node. A
workflow run is not a task a node may submit: a workflow that queued itself
would hold a worker per level, or never end.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gateway.apps.workflows.document import Node, Problem
from gateway.apps.workflows.nodes.base import NodeContext, NodeFailed, NodeType, Outcome, Shape

SUCCESS, PENDING = "SUCCESS", "PENDING"  # TaskState names, as TaskRunner reports them
REFUSED = frozenset({"workflow.run"})


class TaskNode(NodeType):
    name = "task"
    description = "Submit a task to the gateway's task queue; by default wait for its result."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "minLength": 1, "description": "a task type name"},
            "payload": {"type": "object", "description": "its strings are templates"},
            "wait": {"type": "boolean", "default": True},
        },
    }
    outputs: ClassVar[dict[str, str]] = {"task_id": "string", "state": "string", "result": "object"}
    literal_fields = frozenset({"type", "wait"})

    def check(self, node: Node, shape: Shape) -> list[Problem]:
        if node.config.get("type") in REFUSED:
            why = "a workflow run cannot be a task node's task (it could queue itself forever)"
            return [Problem(node.id, "config.type", why)]
        return []

    async def run(self, ctx: NodeContext) -> Outcome:
        if ctx.node.config["type"] in REFUSED:
            raise NodeFailed(f"config.type: {ctx.node.config['type']} cannot be a node's task")
        tasks = ctx.services.tasks
        if tasks is None:
            raise NodeFailed("this gateway runs no task queue")
        kind = ctx.node.config["type"]
        task_id = await tasks.submit(ctx.tenant, kind, ctx.resolve("payload", {}))
        if not ctx.node.config.get("wait", True):
            return Outcome({"task_id": task_id, "state": PENDING, "result": None})
        state, result, error = await tasks.wait(ctx.tenant, task_id)
        if state != SUCCESS:
            raise NodeFailed(f"task {task_id} ({kind}) ended {state}: {error or 'no error given'}")
        return Outcome({"task_id": task_id, "state": state, "result": dict(result)})
