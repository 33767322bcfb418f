"""GraphQL errors with the gRPC status name in `extensions.code`, and the
masking of anything else: a client never sees an exception's text or trace."""

from __future__ import annotations

import logging

import grpc
from graphql import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.schema import Schema
from strawberry.types import ExecutionContext

from gateway.graphql.gate import Failed

log = logging.getLogger("infergate.graphql")
INTERNAL = "internal error"


def refused(code: grpc.StatusCode, message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code.name})


def bad(message: str) -> GraphQLError:
    """Input the schema's types allow but the API does not."""
    return refused(grpc.StatusCode.INVALID_ARGUMENT, message)


def translated(exc: BaseException) -> BaseException:
    """A failed call as a GraphQL error carrying its code; anything else as it is."""
    if isinstance(exc, Failed) and isinstance(exc.code, grpc.StatusCode):
        return refused(exc.code, exc.message)
    return exc


def _coded(error: GraphQLError) -> bool:
    return isinstance(error.extensions, dict) and "code" in error.extensions


class CodedErrors(MaskErrors):
    """Errors raised by resolvers without a code (bugs) become INTERNAL with a
    fixed message; parse and validation errors (no original error) keep their
    message and get INVALID_ARGUMENT."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda error: True, error_message=INTERNAL)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        if _coded(error):
            return error
        if error.original_error is None:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, error.message
        else:
            code, message = grpc.StatusCode.INTERNAL, INTERNAL
        return GraphQLError(
            message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": code.name},
        )


class GatewaySchema(Schema):
    """Logs only the errors that are the gateway's fault; a refused call is the
    caller's answer, already counted and logged by the interceptors."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            if error.original_error is not None and not _coded(error):
                log.error("GraphQL resolver failed", exc_info=error.original_error)
