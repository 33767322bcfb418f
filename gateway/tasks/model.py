"""The task record: what a task is, in domain terms, and its JSON form."""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class TaskState(enum.IntEnum):
    """Values match the proto's TaskState."""

    PENDING = 1
    PROCESSING = 2
    RETRYING = 3
    SUCCESS = 4
    FAILURE = 5
    DEAD_LETTERED = 6
    CANCELLED = 7


FINAL = frozenset({TaskState.SUCCESS, TaskState.FAILURE, TaskState.CANCELLED})
# Watch ends here: nothing changes a dead letter until someone requeues it.
SETTLED = FINAL | {TaskState.DEAD_LETTERED}


@dataclass(frozen=True, slots=True)
class Transition:
    state: TaskState
    time: float  # seconds since the epoch
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    tenant: str
    type: str
    payload: Mapping[str, Any]
    state: TaskState
    transitions: tuple[Transition, ...]
    attempts: int = 0
    error: str = ""
    result: Mapping[str, Any] | None = None
    result_uri: str = ""
    idempotency_key: str = ""
    next_attempt_time: float | None = None  # RETRYING: when it becomes due
    traceparent: str = ""  # W3C: the submitter's span, so the worker's run continues its trace

    @property
    def create_time(self) -> float:
        return self.transitions[0].time

    @property
    def update_time(self) -> float:
        return self.transitions[-1].time

    def to_json(self, *, with_result: bool = True) -> bytes:
        data: dict[str, Any] = {
            "id": self.id,
            "tenant": self.tenant,
            "type": self.type,
            "payload": self.payload,
            "state": self.state.name,
            "transitions": [[t.state.name, t.time, t.reason] for t in self.transitions],
            "attempts": self.attempts,
            "error": self.error,
            "result_uri": self.result_uri,
            "idempotency_key": self.idempotency_key,
            "next_attempt_time": self.next_attempt_time,
        }
        if self.traceparent:
            data["traceparent"] = self.traceparent
        if with_result and self.result is not None:
            data["result"] = self.result
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Task:
        try:
            data = json.loads(raw)
            return cls(
                id=data["id"],
                tenant=data["tenant"],
                type=data["type"],
                payload=data["payload"],
                state=TaskState[data["state"]],
                transitions=tuple(
                    Transition(TaskState[s], float(t), r) for s, t, r in data["transitions"]
                ),
                attempts=int(data["attempts"]),
                error=data["error"],
                result=data.get("result"),
                result_uri=data["result_uri"],
                idempotency_key=data["idempotency_key"],
                next_attempt_time=data["next_attempt_time"],
                traceparent=data.get("traceparent", ""),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a task record: {exc!r}") from exc


def new_id(now: float) -> str:
    """Time-ordered (milliseconds, then random), so that ids sort by creation
    and a page token can be the last id seen."""
    return f"{int(now * 1000):012x}{secrets.token_hex(8)}"
