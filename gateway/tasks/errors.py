"""The tasks package's one exception tree; service.py maps it to gRPC codes once."""

from __future__ import annotations


class TaskError(Exception):
    """Base of every error the task queue raises."""


class InvalidTask(TaskError):
    """The submitted task is wrong; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class TaskNotFound(TaskError):
    """No such task for this tenant (another tenant's task reads the same)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} not found")
        self.task_id = task_id


class IllegalTransition(TaskError):
    """The state machine refuses this change (cancelling a running task, say)."""

    def __init__(self, task_id: str, current: str, wanted: str) -> None:
        super().__init__(f"task {task_id!r} is {current}: cannot become {wanted}")
        self.current = current
        self.wanted = wanted


class QueueUnavailable(TaskError):
    """The queue's store cannot be reached; nothing was changed by the call
    that raised this unless the store applied it before the connection broke
    (a retried Submit with the same idempotency key is safe)."""


class TaskFailed(Exception):
    """Raised by a handler: the attempt failed. `retryable=False` ends the task
    in FAILURE at once instead of retrying it."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
