"""The garbage collector of a serving process, settled once it has started.

After start-up a gateway holds about 230,000 objects the cyclic collector
tracks (modules, config, protobuf descriptors, SDK and HTTP clients), and a
full (generation 2) collection walks every one of them with the event loop
stopped: 60-175 ms measured here (bench/RESULTS.md, "Issue 15"), whenever
enough objects have outlived the younger generations, which is the ~100 ms
worst call that some runs at concurrency 1 saw. `gc.freeze()` moves what
exists once serving starts into a permanent generation that collections
skip, so a full collection walks only what serving itself keeps (a few
thousand objects: caches, connections, records waiting for their flush).
The thresholds stay CPython's (700, 10, 10) by default: a first threshold of
10,000 made young collections rarer but each ~4 ms long, which raised the p99
at concurrency 1 and bought no throughput (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from gateway.metrics import GC_PAUSE

log = logging.getLogger("infergate")


def settle(thresholds: tuple[int, int, int], freeze: bool = True) -> None:
    """Collect what start-up left behind, freeze the rest, set the thresholds,
    and time every collection from now on (infergate_gc_pause_seconds). Call
    from the event loop, which records the pauses once a second."""
    gc.collect()
    if freeze:
        gc.freeze()
    gc.set_threshold(*thresholds)
    if _timed not in gc.callbacks:
        gc.callbacks.append(_timed)
        asyncio.get_running_loop().call_later(1.0, _record_every_second)
    log.info("gc: %d objects frozen, thresholds %s", gc.get_freeze_count(), thresholds)


# Pauses are kept here and recorded later, not from inside the collection:
# the metrics' locks are not reentrant, and a collection can start while one
# is held (prometheus_client's multiprocess mode takes a single global lock).
_started = [0.0]
_pending: list[tuple[int, float]] = []
_PENDING_MAX = 10_000


def _timed(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    elif len(_pending) < _PENDING_MAX:
        _pending.append((info["generation"], time.perf_counter() - _started[0]))


def record() -> None:
    """Moves the pauses timed so far into the histogram."""
    while _pending:
        generation, seconds = _pending.pop()
        GC_PAUSE.labels(str(generation)).observe(seconds)


def _record_every_second() -> None:
    record()
    asyncio.get_running_loop().call_later(1.0, _record_every_second)
