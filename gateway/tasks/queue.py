"""The interfaces every task backend implements, and what they pass around."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.tasks.model import Task, TaskState


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's claim on one attempt of a task. `token` is the backend's
    handle (a stream entry id for Redis; channel and delivery tag for RabbitMQ)."""

    task: Task
    token: str


@dataclass(frozen=True, slots=True)
class Page:
    tasks: list[Task]
    next_token: str  # "" on the last page


class TaskQueue(Protocol):
    """Accepted tasks, their states and their results.

    Delivery is at least once: a task whose worker dies (or stops renewing its
    lease within the visibility timeout) runs again elsewhere, so handlers must
    be safe to repeat; a result is recorded once (the first completion wins,
    later ones are dropped). Every `tenant` argument scopes the call: another
    tenant's task answers TaskNotFound; `None` (operators' tools only) sees all.
    Store failures raise QueueUnavailable. Cancelling a caller's task abandons
    the call; the store is left either before or after it, never in between.
    """

    async def submit(
        self, tenant: str, type: str, payload: Mapping[str, Any], idempotency_key: str = ""
    ) -> Task:
        """Store a PENDING task and return it once it is stored. Idempotent by
        (tenant, idempotency_key): a repeat returns the first task, as it is now."""
        ...

    async def get(self, tenant: str | None, task_id: str) -> Task:
        """The task with its result, fetched from the archive once the hot store
        has dropped it."""
        ...

    async def list_tasks(
        self, tenant: str | None, state: TaskState | None, page_size: int, page_token: str = ""
    ) -> Page:
        """Tasks in creation order, `state` only if given; tasks the hot store
        has dropped are not listed (Get still finds them in the archive)."""
        ...

    async def cancel(self, tenant: str | None, task_id: str) -> Task:
        """PENDING or RETRYING -> CANCELLED; IllegalTransition otherwise."""
        ...

    async def requeue(self, tenant: str | None, task_id: str) -> Task:
        """DEAD_LETTERED -> PENDING, attempts reset; IllegalTransition otherwise."""
        ...

    def watch(self, tenant: str | None, task_id: str) -> AsyncGenerator[Task, None]:
        """The task now, then after each change, ending after a SETTLED state.
        Runs until then or until the caller stops iterating."""
        ...

    # --- the worker's side --------------------------------------------------------------

    async def claim(self, consumer: str, count: int, wait_s: float) -> list[Lease]:
        """Up to `count` tasks, now PROCESSING under `consumer`: first those whose
        worker went silent, then new ones, waiting up to `wait_s` for any."""
        ...

    async def extend(self, lease: Lease) -> None:
        """Renew the lease for another visibility timeout (a heartbeat)."""
        ...

    async def complete(self, lease: Lease, result: Mapping[str, Any]) -> Task:
        """SUCCESS with `result`, archived. If the task was already finished (an
        earlier run of it completed) the stored task is returned unchanged."""
        ...

    async def fail(self, lease: Lease, error: str, retryable: bool = True) -> Task:
        """RETRYING (with backoff), DEAD_LETTERED or FAILURE; a task that was
        already finished is returned unchanged."""
        ...

    async def release(self, lease: Lease) -> Task:
        """Hand an unfinished task back at once (graceful stop): PENDING again,
        this attempt not counted."""
        ...

    async def promote_due(self) -> int:
        """RETRYING tasks whose backoff is over -> PENDING; how many."""
        ...

    async def archive_pending(self, older_than_s: float = 30.0) -> int:
        """Archive finished tasks that completion could not archive (the
        archive was down); how many."""
        ...

    async def depth(self) -> int:
        """Tasks waiting to run (PENDING, not yet claimed)."""
        ...

    async def aclose(self) -> None: ...


class ResultStore(Protocol):
    """The archive: finished tasks with their results, kept beyond the hot
    store's TTL. `put` is idempotent (the same task overwrites itself)."""

    async def put(self, task: Task) -> str:
        """Store the task and its result; returns where (a URI)."""
        ...

    async def get(self, tenant: str, task_id: str) -> Task | None: ...

    async def aclose(self) -> None: ...
