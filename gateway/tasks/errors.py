"""The task queue's exception tree. Each error is also one of the gateway's
kinds (gateway/errors.py), which gateway/status.py maps to gRPC codes."""

from __future__ import annotations

from gateway.errors import (
    FailedPrecondition,
    GatewayError,
    InvalidArgument,
    NotFound,
    Unavailable,
)


class TaskError(GatewayError):
    """Base of every error the task queue raises."""


class InvalidTask(TaskError, InvalidArgument):
    """The submitted task is wrong; `field` names the offending field."""


class TaskNotFound(TaskError, NotFound):
    """No such task for this tenant (another tenant's task reads the same)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r}")
        self.task_id = task_id


class IllegalTransition(TaskError, FailedPrecondition):
    """The state machine refuses this change (cancelling a running task, say)."""

    def __init__(self, task_id: str, current: str, wanted: str) -> None:
        super().__init__(f"task {task_id!r} is {current}: cannot become {wanted}")
        self.current = current
        self.wanted = wanted


class QueueUnavailable(TaskError, Unavailable):
    """The queue's store cannot be reached; nothing was changed by the call
    that raised this unless the store applied it before the connection broke
    (a retried Submit with the same idempotency key is safe)."""


class TaskFailed(Exception):
    """Raised by a handler: the attempt failed. `retryable=False` ends the task
    in FAILURE at once instead of retrying it."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
