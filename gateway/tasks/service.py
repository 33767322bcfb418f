"""The Tasks gRPC service: decode -> TaskQueue -> encode, scoped to the
caller's tenant. Metadata written: `x-http-code: 202` and
`location: /v1/tasks/{id}` on Submit, for the REST shim's 202 Accepted."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import grpc

from gateway import identity
from gateway.pb import tasks_pb2 as pb
from gateway.pb import tasks_pb2_grpc
from gateway.status import abort
from gateway.tasks import metrics, wire
from gateway.tasks.errors import InvalidTask, TaskError, TaskNotFound
from gateway.tasks.handlers import TaskTypes, check_size
from gateway.tasks.model import TaskState
from gateway.tasks.queue import TaskQueue

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_KEY_LENGTH = 256
_ID = re.compile(r"^[0-9a-f]{1,64}$")


def _task_id(value: str) -> str:
    if not value:
        raise InvalidTask("id", "is required")
    if not _ID.match(value):
        raise TaskNotFound(value)  # not an id we could have made
    return value


def _page(size: int, token: str) -> tuple[int, str]:
    if size < 0 or size > MAX_PAGE_SIZE:
        raise InvalidTask("page_size", f"must be in [0, {MAX_PAGE_SIZE}], got {size}")
    if token and not _ID.match(token):
        raise InvalidTask("page_token", "is not a token this service gave out")
    return size or DEFAULT_PAGE_SIZE, token


class TasksService(tasks_pb2_grpc.TasksServicer):
    """Every method answers for the caller's tenant (identity.current())."""

    def __init__(self, queue: TaskQueue, types: TaskTypes, max_payload_bytes: int) -> None:
        self.queue = queue
        self.types = types
        self.max_payload_bytes = max_payload_bytes

    async def Submit(
        self, request: pb.SubmitTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.Task:
        try:
            task_type = self.types.get(request.type)
            payload = wire.payload_from_pb(request.payload)
            check_size(payload, self.max_payload_bytes)
            if len(request.idempotency_key) > MAX_KEY_LENGTH:
                raise InvalidTask("idempotency_key", f"at most {MAX_KEY_LENGTH} characters")
            task_type.validate(payload)
            task = await self.queue.submit(
                identity.current().tenant, request.type, payload, request.idempotency_key
            )
        except TaskError as exc:
            await abort(context, exc)
        metrics.SUBMITTED.labels(task.type).inc()
        await context.send_initial_metadata(
            (("x-http-code", "202"), ("location", f"/v1/tasks/{task.id}"))
        )
        return wire.task_to_pb(task)

    async def Get(self, request: pb.GetTaskRequest, context: grpc.aio.ServicerContext) -> pb.Task:
        try:
            task = await self.queue.get(identity.current().tenant, _task_id(request.id))
        except TaskError as exc:
            await abort(context, exc)
        return wire.task_to_pb(task)

    async def List(
        self, request: pb.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTasksResponse:
        return await self._list(
            wire.state_from_pb(request.state), request.page_size, request.page_token, context
        )

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTasksResponse:
        return await self._list(
            TaskState.DEAD_LETTERED, request.page_size, request.page_token, context
        )

    async def _list(
        self,
        state: TaskState | None,
        page_size: int,
        page_token: str,
        context: grpc.aio.ServicerContext,
    ) -> pb.ListTasksResponse:
        try:
            size, token = _page(page_size, page_token)
            page = await self.queue.list_tasks(identity.current().tenant, state, size, token)
        except TaskError as exc:
            await abort(context, exc)
        return pb.ListTasksResponse(
            tasks=[wire.task_to_pb(t) for t in page.tasks], next_page_token=page.next_token
        )

    async def Cancel(
        self, request: pb.CancelTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.Task:
        try:
            task = await self.queue.cancel(identity.current().tenant, _task_id(request.id))
        except TaskError as exc:
            await abort(context, exc)
        return wire.task_to_pb(task)

    async def Requeue(
        self, request: pb.RequeueTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.Task:
        try:
            task = await self.queue.requeue(identity.current().tenant, _task_id(request.id))
        except TaskError as exc:
            await abort(context, exc)
        return wire.task_to_pb(task)

    async def Watch(
        self, request: pb.WatchTaskRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Task]:
        """Ends after a settled state; the caller's deadline or cancellation
        ends it earlier (the queue's watch is closed with it)."""
        try:
            task_id = _task_id(request.id)
            async with contextlib.aclosing(
                self.queue.watch(identity.current().tenant, task_id)
            ) as watch:
                async for task in watch:
                    yield wire.task_to_pb(task)
        except TaskError as exc:
            await abort(context, exc)
