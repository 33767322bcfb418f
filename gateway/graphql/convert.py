"""Protobuf values as GraphQL values: Structs as JSON, Timestamps as DateTime
(null when unset), 64-bit counters as Long."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NewType

import strawberry
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from gateway.graphql.errors import bad

Long = NewType("Long", int)
SCALARS: dict[object, Any] = {
    Long: strawberry.scalar(
        name="Long",
        serialize=int,
        parse_value=int,
        description="A 64-bit integer (GraphQL's Int has 32 bits)",
    )
}


def json_of(message: Message, field: str) -> Any:
    """A Struct field as plain JSON; null when unset."""
    if not message.HasField(field):
        return None
    value = getattr(message, field)
    assert isinstance(value, struct_pb2.Struct)
    return json_format.MessageToDict(value)


def time_of(message: Message, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    value = getattr(message, field)
    assert isinstance(value, timestamp_pb2.Timestamp)
    return value.ToDatetime(tzinfo=UTC)


def struct(value: Any, where: str) -> struct_pb2.Struct:
    """JSON input as a Struct; INVALID_ARGUMENT unless it is an object."""
    if value is None:
        return struct_pb2.Struct()
    if not isinstance(value, dict):
        raise bad(f"{where}: must be a JSON object")
    message = struct_pb2.Struct()
    message.update(value)
    return message


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return message
