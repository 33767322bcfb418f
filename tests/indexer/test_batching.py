"""MicroBatcher: merging, cost-sorted batches under the budget, fairness,
cancellation and error propagation, driven by a fake model (a plain function
that records its batches and can be held or made to fail)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from indexer.batching import BatcherClosed, MicroBatcher


class FakeModel:
    """Doubles each value; records batches; `hold()` makes the next calls block
    until `release()`, and a value named in `poison` fails its batch."""

    def __init__(self, poison: frozenset[int] = frozenset()) -> None:
        self.batches: list[list[int]] = []
        self.poison = poison
        self._gate = threading.Event()
        self._gate.set()
        self.entered = threading.Event()

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def __call__(self, values: list[int]) -> list[int]:
        self.batches.append(list(values))
        self.entered.set()
        self._gate.wait(10)
        if self.poison & set(values):
            raise ValueError(f"poisoned batch {values}")
        return [2 * v for v in values]


async def wait_for_batch(model: FakeModel) -> None:
    """Until the model has started a call (it runs in the batcher's thread)."""
    await asyncio.to_thread(model.entered.wait, 5)
    model.entered.clear()


async def test_concurrent_callers_share_one_call() -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_tokens=1000, max_wait_s=0.05)
    results = await asyncio.gather(*(batcher.submit([(i, 1)]) for i in range(20)))
    assert results == [[2 * i] for i in range(20)]
    assert len(model.batches) == 1
    await batcher.aclose()


async def test_a_full_batch_does_not_wait() -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_tokens=4, max_wait_s=30)
    result = await asyncio.wait_for(batcher.submit([(1, 2), (2, 2)]), 5)
    assert result == [2, 4]
    await batcher.aclose()


async def test_batches_respect_the_padded_token_budget_and_sort_by_cost() -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_tokens=40, max_batch_size=100, max_wait_s=0.05)
    # value == cost, so the batches show which costs travelled together
    items = [(c, c) for c in (10, 1, 9, 2, 8, 3, 20)]
    assert await batcher.submit(items) == [2 * c for c, _ in items]
    for batch in model.batches:
        assert len(batch) * max(batch) <= 40 or len(batch) == 1
    assert sorted(v for b in model.batches for v in b) == sorted(c for c, _ in items)
    # The oldest (10) goes first with its nearest costs; each batch is a run of the sorted costs.
    assert sorted(model.batches[0]) == [3, 8, 9, 10]
    assert sorted(model.batches[1:]) == [[1, 2], [20]]
    await batcher.aclose()


async def test_padding_is_bounded_so_lengths_stay_together() -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_tokens=1000, max_padding=0.2, max_wait_s=0.05)
    items = [(c, c) for c in (10, 50, 11, 52, 9, 48)]
    assert await batcher.submit(items) == [2 * c for c, _ in items]
    assert sorted(sorted(b) for b in model.batches) == [[9, 10, 11], [48, 50, 52]]
    await batcher.aclose()


async def test_an_item_over_the_budget_runs_alone() -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_tokens=10, max_wait_s=0)
    assert await batcher.submit([(50, 50), (1, 1)]) == [100, 2]
    assert [50] in model.batches
    await batcher.aclose()


async def test_the_oldest_waiting_item_is_in_the_next_batch() -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_tokens=100, max_batch_size=2, max_wait_s=0)
    model.hold()
    first = asyncio.create_task(batcher.submit([(0, 1)]))
    await wait_for_batch(model)
    old = asyncio.create_task(batcher.submit([(90, 50)]))  # long, queued first
    await asyncio.sleep(0)
    shorts = [asyncio.create_task(batcher.submit([(i, 1)])) for i in range(1, 6)]
    await asyncio.sleep(0.01)
    model.release()
    await asyncio.gather(first, old, *shorts)
    assert 90 in model.batches[1]
    await batcher.aclose()


async def test_cancelled_callers_inputs_never_reach_the_model() -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_tokens=100, max_wait_s=0)
    model.hold()
    running = asyncio.create_task(batcher.submit([(1, 1)]))
    await wait_for_batch(model)
    doomed = asyncio.create_task(batcher.submit([(7, 1), (8, 1)]))
    kept = asyncio.create_task(batcher.submit([(9, 1)]))
    await asyncio.sleep(0.01)
    assert batcher.waiting == 3
    doomed.cancel()
    await asyncio.sleep(0)
    assert batcher.waiting == 1
    model.release()
    assert await running == [2] and await kept == [18]
    assert doomed.cancelled()
    assert all(v not in (7, 8) for batch in model.batches for v in batch)
    await batcher.aclose()


async def test_cancelling_a_caller_in_flight_discards_its_results_only() -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_tokens=100, max_wait_s=0.05)
    model.hold()
    mine = asyncio.create_task(batcher.submit([(1, 1)]))
    other = asyncio.create_task(batcher.submit([(2, 1)]))
    await wait_for_batch(model)
    mine.cancel()
    model.release()
    assert await other == [4]
    with pytest.raises(asyncio.CancelledError):
        await mine
    assert await batcher.submit([(3, 1)]) == [6]  # the worker carries on
    await batcher.aclose()


async def test_a_failed_batch_fails_exactly_its_callers() -> None:
    model = FakeModel(poison=frozenset({13}))
    batcher = MicroBatcher(model, max_batch_tokens=100, max_batch_size=2, max_wait_s=0)
    model.hold()
    warmup = asyncio.create_task(batcher.submit([(0, 1)]))
    await wait_for_batch(model)
    # cost keeps 13 with 12 in one batch and 1, 2 in another
    bad = asyncio.create_task(batcher.submit([(13, 50)]))
    neighbour = asyncio.create_task(batcher.submit([(12, 50)]))
    fine = asyncio.create_task(batcher.submit([(1, 1), (2, 1)]))
    await asyncio.sleep(0.01)
    model.release()
    assert await warmup == [0]
    assert await fine == [2, 4]
    for task in (bad, neighbour):
        with pytest.raises(ValueError, match="poisoned"):
            await task
    assert await batcher.submit([(5, 1)]) == [10]
    await batcher.aclose()


async def test_a_failed_caller_drops_its_other_waiting_inputs() -> None:
    model = FakeModel(poison=frozenset({13}))
    batcher = MicroBatcher(model, max_batch_tokens=100, max_batch_size=1, max_wait_s=0)
    with pytest.raises(ValueError, match="poisoned"):
        await batcher.submit([(13, 1), (14, 1), (15, 1)])
    await asyncio.sleep(0.01)
    assert model.batches == [[13]]
    await batcher.aclose()


async def test_close_fails_waiting_callers_and_refuses_new_ones() -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_tokens=100, max_wait_s=0)
    model.hold()
    running = asyncio.create_task(batcher.submit([(1, 1)]))
    await wait_for_batch(model)
    waiting = asyncio.create_task(batcher.submit([(2, 1)]))
    await asyncio.sleep(0)
    await batcher.aclose()
    model.release()
    for task in (running, waiting):
        with pytest.raises(BatcherClosed):
            await task
    with pytest.raises(BatcherClosed):
        await batcher.submit([(3, 1)])
    await batcher.aclose()  # idempotent


async def test_empty_submit_returns_at_once() -> None:
    model = FakeModel()
    batcher = MicroBatcher(model)
    assert await batcher.submit([]) == []
    assert model.batches == []
    await batcher.aclose()


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_tokens"):
        MicroBatcher(FakeModel(), max_batch_tokens=0)
