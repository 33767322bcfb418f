"""What this package needs of the REST shim, as interfaces.

gateway/rest mounts this package on its app, so this package must not import
gateway/rest back (no import cycles between siblings): it reaches the shim's
in-process calls, which run every RPC through the gRPC server's interceptors,
only through these shapes. `gateway.rest.shim.Shim` is the one implementation.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Protocol, runtime_checkable

import grpc
from google.protobuf.descriptor import MethodDescriptor
from starlette.requests import HTTPConnection


class Calls(Protocol):
    async def unary(self, method: MethodDescriptor, request: Any, context: Any) -> Any:
        """The response message; a `Failed` error when the call ends non-OK.
        Cancelling the caller cancels the handler."""

    def stream(
        self, method: MethodDescriptor, request: Any, context: Any
    ) -> AsyncGenerator[Any, None]:
        """The response messages; `Failed` when the call ends non-OK (before or
        after the first message). Closing the generator cancels the handler."""


class Shim(Protocol):
    @property
    def calls(self) -> Calls: ...

    def context(self, request: HTTPConnection, extra: tuple[tuple[str, str], ...] = ()) -> Any:
        """A call's context: the connection's headers as metadata (`extra`
        added), its Grpc-Timeout as the deadline; `Failed` for a bad timeout."""


@runtime_checkable
class Failed(Protocol):
    """An RPC that ended with a non-OK status (the shim's CallError and HttpError)."""

    code: grpc.StatusCode
    message: str
