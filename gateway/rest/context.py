"""A grpc.aio.ServicerContext for RPCs that the REST shim runs in-process.

It records what the servicer says about the call (code, details, initial and
trailing metadata) so the shim can turn it into an HTTP status and headers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NoReturn

import grpc

Metadata = tuple[tuple[str, str | bytes], ...]


class Aborted(Exception):
    """Raised by `RestContext.abort`, as grpc.aio raises AbortError."""


class RestContext:
    """The servicer's view of one REST call. `deadline` is on time.monotonic()."""

    def __init__(self, metadata: Metadata, deadline: float | None, peer: str) -> None:
        self._metadata = metadata
        self._deadline = deadline
        self._peer = peer
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self.initial_metadata: list[tuple[str, str | bytes]] = []
        self.trailing: list[tuple[str, str | bytes]] = []
        self._callbacks: list[Callable[[Any], None]] = []
        self._done = False
        self._cancelled = False
        # Set by the shim for server-streaming calls whose handler uses write(),
        # and for client-streaming calls whose handler uses read().
        self.writes: asyncio.Queue[Any] | None = None
        self.requests: AsyncIterator[Any] | None = None
        # Set by the shim for server-streaming calls: told when the handler sends
        # its initial metadata (its headers, before any message).
        self.on_initial_metadata: Callable[[], None] | None = None

    # -- what the servicer calls -------------------------------------------------
    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> NoReturn:
        if code == grpc.StatusCode.OK:
            raise ValueError("abort() needs a non-OK status code")
        self._code, self._details = code, details
        self.trailing.extend(trailing_metadata)
        raise Aborted(details)

    async def abort_with_status(self, status: Any) -> NoReturn:
        await self.abort(status.code, status.details, status.trailing_metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    async def send_initial_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self.initial_metadata.extend(metadata)
        if self.on_initial_metadata is not None:
            self.on_initial_metadata()

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self.trailing.extend(metadata)

    def trailing_metadata(self) -> Metadata:
        return tuple(self.trailing)

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def peer(self) -> str:
        return self._peer

    def peer_identities(self) -> None:
        return None

    def peer_identity_key(self) -> None:
        return None

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    def set_compression(self, compression: Any) -> None:
        """HTTP responses are not gRPC-compressed; accepted and ignored."""

    def disable_next_message_compression(self) -> None:
        """As set_compression."""

    async def write(self, message: Any) -> None:
        if self.writes is None:
            raise RuntimeError("write() is only for server-streaming calls")
        await self.writes.put(message)

    async def read(self) -> Any:
        if self.requests is None:
            raise RuntimeError("read() is only for client-streaming calls")
        try:
            return await anext(self.requests)
        except StopAsyncIteration:
            return grpc.aio.EOF

    def cancelled(self) -> bool:
        return self._cancelled

    def done(self) -> bool:
        return self._done

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._done:
            callback(self)
        else:
            self._callbacks.append(callback)

    # -- what the shim calls --------------------------------------------------------
    def finish(self, *, cancelled: bool = False) -> None:
        """Mark the call over and run the done callbacks, once."""
        if self._done:
            return
        self._done, self._cancelled = True, cancelled
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)
