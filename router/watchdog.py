"""One timer per stream instead of one per chunk.

`asyncio.timeout` around every `anext()` creates and cancels a timer handle per
chunk (~5 µs each, measured in bench/RESULTS.md). A stream instead arms this
watchdog before each wait, which only records a deadline; the one timer
re-arms itself lazily when it fires early, so a healthy stream creates about
one timer in all. When a wait does overrun, the watchdog cancels the waiting
task exactly as `asyncio.timeout` would, and `expired()` tells that
cancellation apart from anyone else's.
"""

from __future__ import annotations

import asyncio
import math


class Watchdog:
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None, "a Watchdog guards the task that creates it"
        self._task = task
        self._expires = math.inf
        self._handle: asyncio.TimerHandle | None = None
        self._fired = False

    def arm(self, seconds: float) -> None:
        """The next wait may take `seconds`."""
        self._expires = self._loop.time() + seconds
        if self._handle is None:
            self._handle = self._loop.call_at(self._expires, self._check)

    def disarm(self) -> None:
        self._expires = math.inf

    def expired(self) -> bool:
        """Call on CancelledError: True when the cancellation was this
        watchdog's alone (it is then withdrawn, and the wait timed out)."""
        if not self._fired:
            return False
        self._fired = False
        return self._task.uncancel() == 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        if self._expires == math.inf:
            return
        if self._loop.time() >= self._expires:
            self._fired = True
            self._expires = math.inf
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(self._expires, self._check)
