"""heap.settle: what start-up made is out of the collector's reach, and a full
collection then walks only what came after (its cost, not its time)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from gateway import heap
from router.config import ConfigError
from tests.conftest import make_config


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    if heap._timed in gc.callbacks:
        gc.callbacks.remove(heap._timed)


async def test_settle_freezes_start_up_and_sets_the_thresholds(restored: None) -> None:
    kept = [[i] for i in range(50_000)]  # start-up's long-lived objects, say
    heap.settle((10_000, 20, 10))
    assert gc.get_threshold() == (10_000, 20, 10)
    assert gc.get_freeze_count() >= len(kept)
    # A full collection no longer sees them.
    tracked = len(gc.get_objects())
    assert tracked < gc.get_freeze_count()
    assert not any(o is kept[0] for o in gc.get_objects(generation=2))


async def test_every_collection_is_timed_by_generation(restored: None) -> None:
    heap.settle((700, 10, 10))
    heap.settle((700, 10, 10))  # once only
    assert gc.callbacks.count(heap._timed) == 1
    heap.record()
    before = [_count(g) for g in range(3)]
    gc.collect(1)
    gc.collect(2)
    assert [_count(g) for g in range(3)] == before  # not yet: kept for later
    heap.record()
    assert _count(1) >= before[1] + 1 and _count(2) == before[2] + 1


def _count(generation: int) -> float:
    value = REGISTRY.get_sample_value(
        "infergate_gc_pause_seconds_count", {"generation": str(generation)}
    )
    return value or 0.0


async def test_settle_without_freezing(restored: None) -> None:
    gc.unfreeze()
    heap.settle((700, 10, 10), freeze=False)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (700, 10, 10)


def test_the_defaults_and_their_checks() -> None:
    server = make_config().server
    assert (server.gc_freeze, server.gc_thresholds) == (True, (700, 10, 10))
    for bad in ([0, 10, 10], [700, 10]):
        with pytest.raises(ConfigError, match="gc_thresholds"):
            make_config(gc_thresholds=bad)
