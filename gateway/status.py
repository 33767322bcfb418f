"""The one table from every package's exception tree to gRPC status codes.

The REST shim maps these codes on to HTTP (gateway/rest/status.py); usage
records name a failed call by its code's name ("UNAVAILABLE")."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from gateway import errors
from indexer import errors as dataset
from router.errors import (
    AllProvidersFailed,
    ErrorKind,
    InvalidRequest,
    ModelNotFound,
    ProviderError,
    RouterError,
)

_KIND_CODES = {
    ErrorKind.TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # The caller's credentials are fine; the gateway's upstream ones are not.
    ErrorKind.AUTH: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.UPSTREAM_5XX: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INTERRUPTED: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.CANCELLED: grpc.StatusCode.CANCELLED,
    ErrorKind.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
}


# Looked up along the error's class hierarchy: the first kind listed wins.
_GATEWAY_CODES: dict[type[errors.GatewayError], grpc.StatusCode] = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.QuotaExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}


_DATASET_CODES: dict[type[dataset.DatasetError], grpc.StatusCode] = {
    dataset.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    dataset.UnreadableFile: grpc.StatusCode.INVALID_ARGUMENT,
    dataset.NotFound: grpc.StatusCode.NOT_FOUND,
    dataset.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    dataset.NotReady: grpc.StatusCode.FAILED_PRECONDITION,
}


DomainError = RouterError | errors.GatewayError | dataset.DatasetError


_INTERNAL = grpc.StatusCode.INTERNAL


def status_code(error: DomainError) -> grpc.StatusCode:
    if isinstance(error, dataset.DatasetError):
        return _DATASET_CODES.get(type(error), grpc.StatusCode.INTERNAL)
    if isinstance(error, errors.GatewayError):
        kinds = type(error).__mro__
        return next((_GATEWAY_CODES[k] for k in kinds if k in _GATEWAY_CODES), _INTERNAL)
    if isinstance(error, InvalidRequest):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, ModelNotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, ProviderError | AllProvidersFailed):
        return _KIND_CODES[error.kind]
    return grpc.StatusCode.INTERNAL


def status_name(error: DomainError | None) -> str:
    """The name of the code `error` maps to, "OK" for None (what usage records keep)."""
    return "OK" if error is None else status_code(error).name


async def abort(context: grpc.aio.ServicerContext, error: DomainError) -> NoReturn:
    """End the call with the error's status; an upstream's Retry-After (or a
    spent rate limit's wait) travels as `retry-after` trailing metadata (seconds)."""
    retry_after = getattr(error, "retry_after", None)
    trailers = (("retry-after", f"{retry_after:g}"),) if retry_after else ()
    await context.abort(status_code(error), str(error), trailers)
    raise AssertionError("unreachable: abort raises")


R = TypeVar("R")
Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[R]]


def translated(method: Handler[R]) -> Handler[R]:
    """A unary servicer method whose domain errors end the call through this table."""

    @functools.wraps(method)
    async def run(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await method(self, request, context)
        except (errors.GatewayError, RouterError, dataset.DatasetError) as exc:
            await abort(context, exc)

    return run
