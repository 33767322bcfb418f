"""The one table from domain errors to gRPC status codes."""

from __future__ import annotations

from typing import NoReturn

import grpc

from gateway.apps.errors import (
    AlreadyExists,
    AppError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    Unauthenticated,
)
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
}


_APP_CODES: dict[type[AppError], grpc.StatusCode] = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    QuotaExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
}


_DATASET_CODES: dict[type[dataset.DatasetError], grpc.StatusCode] = {
    dataset.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    dataset.UnreadableFile: grpc.StatusCode.INVALID_ARGUMENT,
    dataset.NotFound: grpc.StatusCode.NOT_FOUND,
    dataset.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    dataset.NotReady: grpc.StatusCode.FAILED_PRECONDITION,
}


def status_code(error: RouterError | AppError | dataset.DatasetError) -> grpc.StatusCode:
    if isinstance(error, dataset.DatasetError):
        return _DATASET_CODES.get(type(error), grpc.StatusCode.INTERNAL)
    if isinstance(error, AppError):
        return _APP_CODES.get(type(error), grpc.StatusCode.INTERNAL)
    if isinstance(error, InvalidRequest):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, ModelNotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, ProviderError | AllProvidersFailed):
        return _KIND_CODES[error.kind]
    return grpc.StatusCode.INTERNAL


async def abort(
    context: grpc.aio.ServicerContext, error: RouterError | AppError | dataset.DatasetError
) -> NoReturn:
    """End the call with the error's status; an upstream's Retry-After (or a
    spent rate limit's wait) travels as `retry-after` trailing metadata (seconds)."""
    retry_after = getattr(error, "retry_after", None)
    trailers = (("retry-after", f"{retry_after:g}"),) if retry_after else ()
    await context.abort(status_code(error), str(error), trailers)
    raise AssertionError("unreachable: abort raises")
