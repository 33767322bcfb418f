"""Time limits for many waits with one coarse timer.

`asyncio.timeout` creates and cancels a timer handle per use: ~5 µs in
isolation and ~38 µs of server CPU per call under load (bench/RESULTS.md).
Here a `Watchdog` (one per call or stream) arms by recording a deadline and
joining a set; the router's `Watchdogs` runs a single timer, ticking every
`resolution` seconds only while something is armed, which cancels overdue
waiting tasks exactly as `asyncio.timeout` would. A limit may fire up to one
resolution late. `expired()` tells that cancellation apart from anyone else's.
"""

from __future__ import annotations

import asyncio
import math


class Watchdogs:
    """The shared timer of one router. Bound to the event loop of first use."""

    def __init__(self, resolution: float = 0.01) -> None:
        self._resolution = resolution
        self._armed: set[Watchdog] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watchdog(self) -> Watchdog:
        """A watchdog for the current task."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return Watchdog(self)

    def _arm(self, dog: Watchdog) -> None:
        self._armed.add(dog)
        if self._handle is None:
            assert self._loop is not None
            self._handle = self._loop.call_later(self._resolution, self._tick)

    def _disarm(self, dog: Watchdog) -> None:
        self._armed.discard(dog)

    def _tick(self) -> None:
        assert self._loop is not None
        self._handle = None
        now = self._loop.time()
        overdue = [dog for dog in self._armed if dog.expires <= now]
        for dog in overdue:
            self._armed.discard(dog)
            dog.fire()
        if self._armed:
            self._handle = self._loop.call_later(self._resolution, self._tick)


class Watchdog:
    """Guards the task that arms it: `arm(s)` before a wait, `disarm()` after;
    on CancelledError, `expired()` says whether the wait overran."""

    __slots__ = ("_fired", "_owner", "_task", "expires")

    def __init__(self, owner: Watchdogs) -> None:
        self._owner = owner
        self._task: asyncio.Task[object] | None = None
        self._fired = False
        self.expires = math.inf

    def arm(self, seconds: float) -> None:
        """The current task's next wait may take `seconds`. (The task is taken
        at each arm: a consumer may pull each chunk from a different task.)"""
        assert self._owner._loop is not None
        self._task = asyncio.current_task()
        assert self._task is not None, "arm() from inside a task"
        self.expires = self._owner._loop.time() + seconds
        self._owner._arm(self)

    def disarm(self) -> None:
        self.expires = math.inf
        self._owner._disarm(self)

    def expired(self) -> bool:
        """Call on CancelledError: True when the cancellation was this
        watchdog's alone (it is then withdrawn, and the wait timed out)."""
        if not self._fired:
            return False
        self._fired = False
        assert self._task is not None
        return self._task.uncancel() == 0

    def fire(self) -> None:
        self._fired = True
        self.expires = math.inf
        assert self._task is not None
        self._task.cancel()
