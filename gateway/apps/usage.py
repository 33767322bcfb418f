"""Usage records, written off the hot path.

`record` only appends to a list; a background task writes the list to the
store in one batch every `interval_s`, or sooner once `batch_size` records
wait. A failed write keeps its records for the next attempt (up to
`max_pending`, beyond which the oldest are dropped and counted), and `aclose`
writes what is left, so a clean shutdown loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.apps.model import UsageRecord
from gateway.apps.store.usage import UsageWriter

log = logging.getLogger("infergate.usage")


class UsageRecorder:
    def __init__(
        self, writer: UsageWriter, *, batch_size: int = 500, interval_s: float = 1.0,
        max_pending: int = 100_000,
    ) -> None:  # fmt: skip
        self._writer = writer
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._max_pending = max_pending
        self._pending: list[UsageRecord] = []
        self._writing = asyncio.Lock()  # one batch at a time: a flush waits for the one underway
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def record(self, record: UsageRecord) -> None:
        """Queue one record; never blocks, never raises."""
        self._pending.append(record)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    async def flush(self) -> None:
        """Write everything queued so far; when it returns, every record queued
        before the call is in the store. What fails (or is cancelled) stays queued."""
        async with self._writing:  # a batch underway holds records queued before us
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                await self._writer.add(batch)
            except BaseException as exc:
                if isinstance(exc, Exception):
                    log.warning("writing %d usage records failed, keeping them: %r",
                                len(batch), exc)  # fmt: skip
                self._pending[:0] = batch
                excess = len(self._pending) - self._max_pending
                if excess > 0:
                    del self._pending[:excess]
                    self.dropped += excess
                raise

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            with contextlib.suppress(Exception):  # logged in flush; retried next round
                await self.flush()

    async def aclose(self, patience_s: float = 5.0) -> None:
        """Stop the background writes and write what is left. A write in progress
        is let finish (up to `patience_s`): cancelling it mid-transaction could
        leave a database connection, and its driver thread, open."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), patience_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self.flush()
