"""Dynamic micro-batching: concurrent callers' inputs share one model call.

Each caller submits items with a cost (for an embedder: its length in tokens,
which is what padding makes every row of a batch cost). One worker task forms
batches and runs them, one at a time, in a dedicated thread, so the event
loop stays free while the model computes:

- A batch always contains the oldest waiting item (no caller starves), plus
  the items nearest to it in cost order, as many as fit `max_batch_size`,
  `max_batch_tokens` (rows x longest row: the padded size) and `max_padding`
  (the share of the padded size that is padding). Items left out form the
  next batches with later arrivals, so under load batches stay
  length-homogeneous instead of padding every row to the longest one.
- When the worker is idle, the first item waits at most `max_wait_s` for
  company (less once the waiting items fill a batch). While a batch runs, new
  items queue up and form the next batch without waiting.
- A cancelled caller's waiting items are dropped. Items already in the running
  batch are computed (a model call cannot be interrupted) and discarded.
- A failing batch raises its exception to exactly the callers that had items
  in it; other callers' batches are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from indexer.errors import DatasetError

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosed(DatasetError):
    """The batcher was closed before (or while) the caller's items ran."""


@dataclass(eq=False)
class _Call(Generic[R]):
    future: asyncio.Future[list[R]]
    results: list[Any]
    remaining: int


@dataclass(eq=False)
class _Item(Generic[T]):
    seq: int
    cost: int
    value: T
    call: _Call[Any] = field(repr=False)
    index: int


class MicroBatcher(Generic[T, R]):
    """Merges concurrent `submit` calls into batches for `run_batch`.

    `run_batch(values) -> results` (one result per value, in order) runs in a
    worker thread, never two at once. It is bound to the event loop of its
    first `submit`.
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_tokens: int = 8192,
        max_batch_size: int = 128,
        max_wait_s: float = 0.002,
        max_padding: float = 1.0,
        thread_name: str = "micro-batch",
    ) -> None:
        if max_batch_tokens < 1 or max_batch_size < 1 or max_wait_s < 0 or max_padding < 0:
            raise ValueError(
                "max_batch_tokens and max_batch_size must be >= 1, max_wait_s and max_padding >= 0"
            )
        self._run_batch = run_batch
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_padding = max_padding
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._pending: list[_Item[T]] = []  # arrival order
        self._pending_cost = 0
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, items: Sequence[tuple[T, int]]) -> list[R]:
        """Results for `(value, cost)` items, in order, once every batch holding
        one of them has run. Cancelling the caller drops its waiting items; an
        item whose cost alone exceeds `max_batch_tokens` runs in a batch of one.
        Raises the batch's exception if one of its batches fails, and
        BatcherClosed after `aclose`."""
        if self._closed:
            raise BatcherClosed("the micro-batcher is closed")
        if not items:
            return []
        self._start()
        call: _Call[R] = _Call(
            asyncio.get_running_loop().create_future(), [None] * len(items), len(items)
        )
        for index, (value, cost) in enumerate(items):
            self._pending.append(_Item(next(self._seq), max(1, cost), value, call, index))
            self._pending_cost += max(1, cost)
        self._wake.set()
        if self._pending_cost >= self.max_batch_tokens or len(self._pending) >= self.max_batch_size:
            self._full.set()
        try:
            return await call.future
        except asyncio.CancelledError:
            self._drop(call)
            raise

    @property
    def waiting(self) -> int:
        """Items queued and not yet in a batch (observed by tests and metrics)."""
        return len(self._pending)

    async def aclose(self) -> None:
        """Fail every waiting caller with BatcherClosed and stop the worker. A batch
        already running finishes in its thread, its results discarded. Idempotent."""
        self._closed = True
        for item in self._pending:
            _fail(item.call, BatcherClosed("the micro-batcher closed before this input ran"))
        self._pending.clear()
        self._pending_cost = 0
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())
        elif self._worker.get_loop() is not asyncio.get_running_loop():
            raise RuntimeError("a MicroBatcher is bound to the event loop that first used it")

    def _drop(self, call: _Call[Any]) -> None:
        kept = [item for item in self._pending if item.call is not call]
        self._pending_cost -= sum(item.cost for item in self._pending if item.call is call)
        self._pending = kept

    async def _work(self) -> None:
        try:
            await self._batches()
        except BaseException as exc:
            # Whatever stops the worker must not leave callers waiting forever.
            closed = BatcherClosed(f"the micro-batcher stopped: {exc!r}")
            for item in self._pending:
                _fail(item.call, closed)
            self._pending.clear()
            self._pending_cost = 0
            self._closed = True
            raise

    async def _batches(self) -> None:
        loop = asyncio.get_running_loop()
        idle = True
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                idle = True
            if idle:  # items that arrive while a batch runs wait for it, not for this
                await self._gather()
                idle = False
            batch = self._take_batch()
            if not batch:
                continue
            try:
                values = [item.value for item in batch]
                results = await loop.run_in_executor(self._executor, self._run_batch, values)
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"run_batch returned {len(results)} results for {len(batch)}"
                    )
            except asyncio.CancelledError:
                for item in batch:
                    _fail(item.call, BatcherClosed("the micro-batcher closed while this input ran"))
                raise
            except Exception as exc:  # the batch's callers get it; the worker goes on
                for call in {id(item.call): item.call for item in batch}.values():
                    _fail(call, exc)
                    self._drop(call)  # their other inputs would be computed for nothing
                continue
            for item, result in zip(batch, results, strict=True):
                _deliver(item, result)

    async def _gather(self) -> None:
        """Give the first item of an idle spell up to max_wait_s for company."""
        if self.max_wait_s and not self._full.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.max_wait_s)

    def _fits(self, size: int, longest: int, real: int) -> bool:
        padded = size * longest
        return padded <= self.max_batch_tokens and padded - real <= self.max_padding * padded

    def _take_batch(self) -> list[_Item[T]]:
        """The oldest item plus its nearest neighbours in cost order, as many as fit."""
        if not self._pending:
            return []
        order = sorted(self._pending, key=lambda item: (item.cost, item.seq))
        oldest = self._pending[0]
        lo = next(i for i, item in enumerate(order) if item is oldest)
        hi, longest, real = lo + 1, oldest.cost, oldest.cost
        while hi - lo < self.max_batch_size:
            # Grow towards the neighbour nearest in cost: the least padding.
            size = hi - lo + 1
            below = oldest.cost - order[lo - 1].cost if lo > 0 else math.inf
            above = order[hi].cost - oldest.cost if hi < len(order) else math.inf
            fits_below = below < math.inf and self._fits(size, longest, real + order[lo - 1].cost)
            fits_above = above < math.inf and self._fits(
                size, order[hi].cost, real + order[hi].cost
            )
            if fits_below and (not fits_above or below <= above):
                lo -= 1
                real += order[lo].cost
            elif fits_above:
                longest = order[hi].cost
                real += longest
                hi += 1
            else:
                break
        batch = order[lo:hi]
        taken = {id(item) for item in batch}
        self._pending = [item for item in self._pending if id(item) not in taken]
        self._pending_cost -= sum(item.cost for item in batch)
        if self._pending_cost < self.max_batch_tokens and len(self._pending) < self.max_batch_size:
            self._full.clear()
        return batch


def _deliver(item: _Item[Any], result: Any) -> None:
    call = item.call
    if call.future.done():  # cancelled, or failed by another batch
        return
    call.results[item.index] = result
    call.remaining -= 1
    if call.remaining == 0:
        call.future.set_result(call.results)


def _fail(call: _Call[Any], exc: BaseException) -> None:
    if not call.future.done():
        call.future.set_exception(exc)
