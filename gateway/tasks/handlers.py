"""Task types: what a worker runs for each `type`, and what Submit accepts.

A feature adds its types from its own module: list the module in
`HANDLER_MODULES` and give it `register(types: TaskTypes) -> None`, which
calls `types.add(TaskType("dataset.ingest", run, validate))`. Handlers may
run more than once for one task (delivery is at least once): make them safe
to repeat.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.tasks.errors import InvalidTask
from gateway.tasks.model import Task
from router.errors import RouterError
from router.router import Router

HANDLER_MODULES: tuple[str, ...] = ("gateway.tasks.builtin",)


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One Router call a handler made, as a usage record sees it."""

    model: str  # the alias asked for
    deployment: str  # "" when no deployment answered
    input_tokens: int
    output_tokens: int
    latency_ms: int
    error: RouterError | None = None  # why it failed; None: it answered


class UsageSink(Protocol):
    """Where a worker sends its handlers' model calls (the App layer's usage
    recorder). The worker flushes it before it saves a task's result, so that
    a worker killed after that loses none of the task's records."""

    def record(self, task: Task, call: ModelCall) -> None:
        """Queue one call's record; never blocks."""

    async def flush(self) -> None:
        """Write what is queued; raises when it cannot (the records stay queued)."""


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a handler gets besides its payload."""

    task: Task
    router: Router  # the current config snapshot's router
    usage: UsageSink | None = None

    def used(self, call: ModelCall) -> None:
        """Record a model call made for this task; never blocks, never raises
        beyond what the sink does (the recorder only queues)."""
        if self.usage is not None:
            self.usage.record(self.task, call)


Run = Callable[[TaskContext, Mapping[str, Any]], Awaitable[Mapping[str, Any]]]


def check_size(payload: Mapping[str, Any], max_bytes: int) -> None:
    """InvalidTask when `payload`, as compact JSON, is larger than `max_bytes`."""
    size = len(json.dumps(payload, separators=(",", ":")))
    if size > max_bytes:
        raise InvalidTask("payload", f"{size} bytes, the limit is {max_bytes}")


def _accept(payload: Mapping[str, Any]) -> None:
    return None


@dataclass(frozen=True, slots=True)
class TaskType:
    """`run` returns the result (JSON-able); it raises errors.TaskFailed to
    fail the attempt (retryable=False: for good). Cancellation means the worker
    is stopping: stop and let it propagate. `validate` raises InvalidTask naming
    the payload field at Submit, so that a bad task is refused before it queues."""

    name: str
    run: Run
    validate: Callable[[Mapping[str, Any]], None] = _accept


class TaskTypes:
    def __init__(self) -> None:
        self._types: dict[str, TaskType] = {}

    def add(self, task_type: TaskType) -> None:
        if task_type.name in self._types:
            raise ValueError(f"task type {task_type.name!r} is registered twice")
        self._types[task_type.name] = task_type

    def get(self, name: str) -> TaskType:
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(sorted(self._types))
            raise InvalidTask("type", f"unknown task type {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._types)


def load(modules: tuple[str, ...] = HANDLER_MODULES) -> TaskTypes:
    types = TaskTypes()
    for module in modules:
        importlib.import_module(module).register(types)
    return types
