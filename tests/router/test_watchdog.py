from __future__ import annotations

import asyncio

import pytest

from router.watchdog import Watchdog, Watchdogs


async def test_an_overrun_is_its_own_cancellation_and_the_task_goes_on() -> None:
    dogs_ = Watchdogs(resolution=0.005)
    dog = dogs_.watchdog()
    dog.arm(0.02)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.sleep(1)
    assert dog.expired()
    dog.disarm()
    await asyncio.sleep(0)  # the task was un-cancelled: it can keep awaiting
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_waits_within_the_limit_are_untouched_across_many_arms() -> None:
    dogs_ = Watchdogs(resolution=0.005)
    dog = dogs_.watchdog()
    for _ in range(20):
        dog.arm(0.05)
        await asyncio.sleep(0.005)
        dog.disarm()
    await asyncio.sleep(0.1)  # the shared timer ticks while this one is disarmed: no effect
    assert not dog.expired()
    dog.disarm()


async def test_someone_elses_cancel_is_not_swallowed() -> None:
    async def guarded() -> bool:
        dog = Watchdogs(resolution=0.005).watchdog()
        dog.arm(10)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return dog.expired()
        finally:
            dog.disarm()
        return True

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.01)
    task.cancel()
    assert await task is False


async def test_both_in_one_tick_leaves_the_outer_cancel_standing() -> None:
    dogs: list[Watchdog] = []

    async def guarded() -> tuple[bool, int]:
        dogs.append(dog := Watchdogs(resolution=0.005).watchdog())
        dog.arm(60)  # never fires by itself: the test fires it below
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            expired = dog.expired()
            return expired, asyncio.current_task().cancelling()  # type: ignore[union-attr]
        finally:
            dog.disarm()
        return True, 0

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.01)
    dog = dogs[0]
    dog.fire()  # the watchdog fires ...
    task.cancel()  # ... and someone else cancels, before the task runs again
    assert await task == (False, 1)


async def test_one_timer_serves_many_tasks() -> None:
    dogs = Watchdogs(resolution=0.005)

    async def wait(limit: float, sleep: float) -> str:
        dog = dogs.watchdog()
        dog.arm(limit)
        try:
            await asyncio.sleep(sleep)
        except asyncio.CancelledError:
            if dog.expired():
                return "timed out"
            raise
        finally:
            dog.disarm()
        return "done"

    results = await asyncio.gather(*(wait(0.02, 0.2 if i % 2 else 0.001) for i in range(50)))
    assert results == ["done", "timed out"] * 25
    await asyncio.sleep(0.02)
    assert dogs._handle is None  # nothing armed: the timer stopped ticking


# --- issue 14 (mutation testing): gaps the mutants showed -----------------------------------


async def test_after_a_timeout_a_later_cancel_is_someone_elses() -> None:
    """A watchdog reused for the next wait (a stream's next chunk) must not take the
    caller's cancel for a second timeout."""
    waiting = asyncio.Event()

    async def guarded() -> list[bool]:
        dog = Watchdogs(resolution=0.005).watchdog()
        seen = []
        for limit in (0.01, 10):
            dog.arm(limit)
            try:
                if limit > 1:
                    waiting.set()
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                seen.append(dog.expired())
            finally:
                dog.disarm()
        return seen

    task = asyncio.create_task(guarded())
    await waiting.wait()
    task.cancel()
    assert await task == [True, False]
