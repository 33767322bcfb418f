"""The one table from domain errors to gRPC status codes."""

from __future__ import annotations

from typing import NoReturn

import grpc

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
}


def status_code(error: RouterError) -> grpc.StatusCode:
    if isinstance(error, InvalidRequest):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, ModelNotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, ProviderError | AllProvidersFailed):
        return _KIND_CODES[error.kind]
    return grpc.StatusCode.INTERNAL


async def abort(context: grpc.aio.ServicerContext, error: RouterError) -> NoReturn:
    """End the call with the error's status; an upstream's Retry-After travels
    as `retry-after` trailing metadata (seconds)."""
    retry_after = getattr(error, "retry_after", None)
    trailers = (("retry-after", f"{retry_after:g}"),) if retry_after else ()
    await context.abort(status_code(error), str(error), trailers)
    raise AssertionError("unreachable: abort raises")
