"""What the servicers share about a call: the caller's deadline, pages, and
JSON carried in a google.protobuf.Struct."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format, struct_pb2

T = TypeVar("T")


def deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's deadline on the time.monotonic() clock; None: it set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def paged(found: Sequence[T], limit: int, token: Callable[[T], str]) -> tuple[list[T], str]:
    """A page from a listing fetched with `limit + 1` items, and the next
    page's token (the last item's, by `token`): "" when the extra item
    was not there."""
    if len(found) > limit:
        return list(found[:limit]), token(found[limit - 1])
    return list(found), ""


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as JSON, its whole numbers ints again: a Struct keeps every
    number as a double, and `k: 4` must not arrive as 4.0."""
    whole: dict[str, Any] = _whole(json_format.MessageToDict(struct))
    return whole


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value
