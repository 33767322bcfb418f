"""Items queued by synchronous callers and sent by one task at a time: what
was queued while a batch was being sent goes in the next one. The Redis rate
limiter's adjustments and the spend ledger's settlements both go this way, so a
burst of calls ending together costs one pipelined round trip on one
connection, not a task and a pooled connection each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Batched(Generic[T]):
    """`send` gets each batch and handles its own failures (an exception it
    lets out ends the sending task; the next `add` starts another)."""

    def __init__(self, send: Callable[[list[T]], Awaitable[None]]) -> None:
        self._send = send
        self.pending: list[T] = []
        self.sending: asyncio.Task[None] | None = None

    def add(self, item: T) -> None:
        self.pending.append(item)
        if self.sending is None or self.sending.done():
            self.sending = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            await self._send(batch)

    async def flush(self) -> None:
        """Wait for the items queued or in flight."""
        while self.sending is not None and not self.sending.done():
            await asyncio.gather(self.sending, return_exceptions=True)
