"""What the OpenAI- and Anthropic-compatible routes share: reading a JSON body,
and calling the Router in-process through the server's interceptors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from starlette.requests import Request

from gateway.pb import router_pb2 as pb
from gateway.rest.call import CallError
from gateway.rest.context import RestContext
from gateway.rest.methods import GENERATE_STREAM
from gateway.rest.shim import HttpError, Shim
from gateway.rest.transcode import parse_json

# OpenAI's and Anthropic's names for finish reasons, keyed by the gateway's.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "content_filter": "refusal"}  # fmt: skip


class CompatError(Exception):
    """A vendor-shaped error: the HTTP status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad(message: str) -> CompatError:
    return CompatError(400, message)


async def json_body(shim: Shim, request: Request) -> dict[str, Any]:
    try:
        body = parse_json(await shim.body(request))
    except HttpError as exc:
        raise CompatError(exc.http_status or 400, exc.message) from None
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not isinstance(body, dict):
        raise bad("request body: must be a JSON object")
    return body


def context(shim: Shim, request: Request, extra: tuple[tuple[str, str], ...] = ()) -> RestContext:
    try:
        return shim.context(request, extra)
    except HttpError as exc:
        raise bad(exc.message) from None


async def call(shim: Shim, method: MethodDescriptor, message: Any, ctx: RestContext) -> Any:
    return await shim.calls.unary(method, message, ctx)


def batches(shim: Shim, message: pb.GenerateRequest, ctx: RestContext) -> AsyncIterator[Any]:
    """GenerateStream's chunks, in lists of those ready at once."""
    return shim.calls.batches(GENERATE_STREAM, message, ctx)


def text_of(content: Any, where: str) -> str:
    """Plain text from a string or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("text", ""), str):
                raise bad(f"{where}[{i}]: must be a content part object")
            texts.append(part.get("text", ""))
        return "".join(texts)
    raise bad(f"{where}: must be a string or a list of content parts")


_INT32 = 2**31 - 1  # the proto's integer fields


def number(body: dict[str, Any], key: str, kind: type = float) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(f"{key}: must be a number")
    if kind is int and value != int(value):
        raise bad(f"{key}: must be an integer")
    if kind is int and not -_INT32 <= value <= _INT32:
        raise bad(f"{key}: must be at most {_INT32}, got {value}")
    try:
        return kind(value)
    except OverflowError:  # an integer past what a float holds
        raise bad(f"{key}: {value} is out of range") from None


def failed_call(exc: CallError) -> tuple[int, dict[str, str]]:
    """The HTTP status and headers (Retry-After, X-Request-Id, ...) of a failed call;
    each compatible surface wraps them in its own vendor's error body."""
    from gateway.rest.status import response_headers

    headers: dict[str, str] = {}
    if exc.context is not None:
        _, headers = response_headers(exc.context.initial_metadata, exc.context.trailing)
    return code_status(exc.code), headers


def code_status(code: grpc.StatusCode) -> int:
    from gateway.rest.status import HTTP_STATUS

    return HTTP_STATUS.get(code, 500)
