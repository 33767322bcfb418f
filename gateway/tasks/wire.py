"""Protobuf <-> domain conversion for the Tasks service, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from gateway.pb import tasks_pb2 as pb
from gateway.rpc import from_struct
from gateway.tasks.model import Task, TaskState


def _time(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp


def _struct(data: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct


def payload_from_pb(struct: struct_pb2.Struct) -> dict[str, Any]:
    """Struct numbers are doubles: whole numbers come back as int."""
    return from_struct(struct)


def state_from_pb(value: int) -> TaskState | None:
    return None if value == pb.TASK_STATE_UNSPECIFIED else TaskState(value)


def task_to_pb(task: Task) -> pb.Task:
    message = pb.Task(
        id=task.id,
        type=task.type,
        state=int(task.state),  # type: ignore[arg-type]
        attempts=task.attempts,
        error=task.error,
        result_uri=task.result_uri,
        transitions=[
            pb.Transition(state=int(t.state), time=_time(t.time), reason=t.reason)  # type: ignore[arg-type]
            for t in task.transitions
        ],
        create_time=_time(task.create_time),
        update_time=_time(task.update_time),
        payload=_struct(task.payload),
        idempotency_key=task.idempotency_key,
    )
    if task.result is not None:
        message.result.CopyFrom(_struct(task.result))
    if task.next_attempt_time is not None:
        message.next_attempt_time.CopyFrom(_time(task.next_attempt_time))
    return message
