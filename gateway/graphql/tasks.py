"""Tasks and dead letters."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.graphql.context import GraphContext
from gateway.graphql.convert import json_of, time_of
from gateway.graphql.pagination import DEFAULT_FIRST, Connection, Page
from gateway.graphql.rpcs import TASKS
from gateway.pb import tasks_pb2 as pb


@strawberry.enum
class TaskState(Enum):
    PENDING = pb.PENDING
    PROCESSING = pb.PROCESSING
    RETRYING = pb.RETRYING
    SUCCESS = pb.SUCCESS
    FAILURE = pb.FAILURE
    DEAD_LETTERED = pb.DEAD_LETTERED
    CANCELLED = pb.CANCELLED


def _state(value: int) -> TaskState | None:
    return TaskState(value) if value != pb.TASK_STATE_UNSPECIFIED else None


@strawberry.type
class Transition:
    state: TaskState | None
    time: datetime | None
    reason: str


@strawberry.type
class Task:
    id: str
    type: str
    state: TaskState | None
    attempts: int
    error: str
    payload: JSON | None
    result: JSON | None
    result_uri: str
    idempotency_key: str
    transitions: list[Transition]
    create_time: datetime | None
    update_time: datetime | None
    next_attempt_time: datetime | None

    @classmethod
    def from_pb(cls, t: pb.Task) -> Task:
        transitions = [
            Transition(state=_state(x.state), time=time_of(x, "time"), reason=x.reason)
            for x in t.transitions
        ]
        return cls(
            id=t.id, type=t.type, state=_state(t.state), attempts=t.attempts, error=t.error,
            payload=json_of(t, "payload"), result=json_of(t, "result"), result_uri=t.result_uri,
            idempotency_key=t.idempotency_key, transitions=transitions,
            create_time=time_of(t, "create_time"), update_time=time_of(t, "update_time"),
            next_attempt_time=time_of(t, "next_attempt_time"),
        )  # fmt: skip


@strawberry.type
class TaskQueries:
    @strawberry.field(description="The caller's tenant's tasks, oldest first")
    async def tasks(
        self,
        info: Info[GraphContext, None],
        state: TaskState | None = None,
        first: int = DEFAULT_FIRST,
        after: str | None = None,
    ) -> Connection[Task]:
        page = Page.of(first, after)
        request = pb.ListTasksRequest(
            state=state.value if state else pb.TASK_STATE_UNSPECIFIED,
            page_size=page.size, page_token=page.token,
        )  # fmt: skip
        reply = await info.context.unary(TASKS["List"], request)
        return page.connection(reply.tasks, reply.next_page_token, Task.from_pb)

    @strawberry.field(description="NOT_FOUND when absent or not yours")
    async def task(self, info: Info[GraphContext, None], id: str) -> Task:
        return Task.from_pb(await info.context.unary(TASKS["Get"], pb.GetTaskRequest(id=id)))

    @strawberry.field(description="Tasks whose attempts ran out (role developer)")
    async def dead_letters(
        self, info: Info[GraphContext, None], first: int = DEFAULT_FIRST, after: str | None = None
    ) -> Connection[Task]:
        page = Page.of(first, after)
        request = pb.ListDeadLettersRequest(page_size=page.size, page_token=page.token)
        reply = await info.context.unary(TASKS["ListDeadLetters"], request)
        return page.connection(reply.tasks, reply.next_page_token, Task.from_pb)
