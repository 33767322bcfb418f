"""The attempt walk on its own, on a fake clock: time budgets and timeout errors,
which deployment comes next, backoff and Retry-After between rounds, the
caller's deadline, stale half-open tickets, and the error when none is left."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from router.breaker import BreakerState
from router.config import BreakerConfig, DeploymentConfig, RetryConfig
from router.errors import AllProvidersFailed, ErrorKind, ProviderError
from router.plan import Deployment, Plan
from router.state import DeploymentState
from router.walk import Walk, WalkContext
from router.watchdog import Watchdogs
from tests.router.scripted import FakeClock, Scripted


class TopOfRange(random.Random):
    """Backoff draws the most it may, and says which range it drew from."""

    def __init__(self) -> None:
        super().__init__(0)
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return b


def deployment(name: str, clock: Any, **breaker: Any) -> Deployment:
    return Deployment(
        DeploymentConfig(name=name, provider="scripted", model="m"),
        Scripted(name),
        DeploymentState(BreakerConfig(**breaker), clock, 0.5),
    )


def walk(
    candidates: list[Deployment],
    clock: Any,
    deadline: float | None = None,
    skipped: list[tuple[Deployment, str]] | None = None,
    rng: random.Random | None = None,
    **retry: Any,
) -> Walk:
    context = WalkContext(clock, rng or random.Random(0), Watchdogs(), debug=False)
    plan = Plan("m", "weighted_round_robin", candidates, skipped or [], RetryConfig(**retry))
    return Walk(context, plan, deadline, "req")


async def step(w: Walk) -> Deployment | None:
    """The next deployment; bounded, so that a walk that never ends fails the test."""
    return await asyncio.wait_for(w.next(), 1)


TIMEOUT = ProviderError(ErrorKind.TIMEOUT, "read timed out")
FIVE_XX = ProviderError(ErrorKind.UPSTREAM_5XX, "bad gateway")


# --- budgets and timeout errors -------------------------------------------------------------


def test_a_step_budget_is_its_limit_cut_to_the_deadline() -> None:
    clock = FakeClock(1000.0)
    a = deployment("a", clock)
    assert walk([a], clock).budget(60) == 60
    bounded = walk([a], clock, deadline=1010.0)
    assert (bounded.budget(60), bounded.budget(5)) == (10.0, 5)
    clock.advance(11)
    assert bounded.budget(60) == 0.0


def test_timeout_errors_say_whether_the_limit_or_the_deadline_ran_out() -> None:
    clock = FakeClock(1000.0)
    a = deployment("a", clock)
    bounded = walk([a], clock, deadline=1010.0)

    def said(error: ProviderError) -> tuple[ErrorKind, str]:
        return error.kind, str(error)

    clock.now = 1009.0
    assert said(bounded.timed_out("no answer", 0.5)) == (ErrorKind.TIMEOUT, "no answer within 0.5s")
    assert said(bounded.stalled(2)) == (ErrorKind.INTERRUPTED, "stream stalled: no chunk for 2s")
    clock.now = 1010.0  # the deadline itself counts as passed
    assert said(bounded.timed_out("no answer", 0.5)) == (
        ErrorKind.TIMEOUT,
        "no answer: the caller's deadline passed",
    )
    assert said(bounded.stalled(2)) == (
        ErrorKind.TIMEOUT,
        "stream stalled: the caller's deadline passed",
    )
    assert said(walk([a], clock).timed_out("no first chunk", 60)) == (
        ErrorKind.TIMEOUT,
        "no first chunk within 60s",
    )


# --- which deployment next ------------------------------------------------------------------


async def test_no_attempt_starts_at_or_after_the_deadline() -> None:
    clock = FakeClock(1000.0)
    assert await walk([deployment("a", clock)], clock, deadline=1000.0).next() is None


async def test_unusable_deployments_are_passed_over_and_reported() -> None:
    clock = FakeClock(1000.0)
    a, b, c = deployment("a", clock), deployment("b", clock), deployment("c", clock)
    a.state.failed(ProviderError(ErrorKind.RATE_LIMITED, "slow down", retry_after=5))
    w = walk([a, b], clock, skipped=[(c, "health probe failed: down")], retries=0)
    assert await step(w) is b
    w.failed(b, FIVE_XX)
    assert await step(w) is None
    error = w.exhausted()
    assert isinstance(error, AllProvidersFailed)
    assert (error.model, error.attempts, error.skipped) == (
        "m",
        [("b", FIVE_XX)],
        [("c", "health probe failed: down"), ("a", "rate limited by the upstream for 5.0s more")],
    )
    assert str(error) == (
        "all deployments of 'm' failed (b: upstream_5xx: bad gateway; "
        "c skipped: health probe failed: down; "
        "a skipped: rate limited by the upstream for 5.0s more)"
    )


async def test_a_deployment_tried_once_and_skipped_later_is_reported_as_tried() -> None:
    clock = FakeClock(1000.0)
    a = deployment("a", clock)
    w = walk([a], clock, retries=1, backoff_base_s=0)
    assert await step(w) is a
    w.failed(a, ProviderError(ErrorKind.RATE_LIMITED, "slow down", retry_after=0.5))
    assert await step(w) is None  # still rate limited on the fake clock after the pause
    error = w.exhausted()
    assert (error.skipped, error.retry_after) == ([], 0.5)
    assert error.kind is ErrorKind.RATE_LIMITED


async def test_a_half_open_deployment_with_its_trials_out_is_passed_over() -> None:
    clock = FakeClock(1000.0)
    a, b = deployment("a", clock, consecutive_failures=1), deployment("b", clock)
    a.state.failed(FIVE_XX)
    clock.advance(15)
    assert a.state.breaker.acquire() is not None  # someone else's trial
    w = walk([a, b], clock, retries=0)
    assert await step(w) is b
    w.failed(b, FIVE_XX)
    assert w.exhausted().skipped == [("a", "circuit half-open: trial calls in flight")]


# --- verdicts: the caller's deadline, stale tickets -----------------------------------------


@pytest.mark.parametrize(
    ("error", "deadline", "counted"),
    [
        (TIMEOUT, 1000.0, False),  # the caller's deadline (reached exactly) ran out: not a's fault
        (TIMEOUT, 1000.5, True),  # a's own attempt limit
        (TIMEOUT, None, True),
        (FIVE_XX, 1000.0, True),  # a failed, deadline or not
    ],
)
async def test_a_timeout_counts_against_the_upstream_unless_the_caller_gave_up(
    error: ProviderError, deadline: float | None, counted: bool
) -> None:
    clock = FakeClock(999.0)
    a = deployment("a", clock, consecutive_failures=1)
    w = walk([a], clock, deadline=deadline)
    assert await step(w) is a
    clock.now = 1000.0
    w.failed(a, error)
    assert w.attempts == [("a", error)]
    assert (a.state.failures, a.state.breaker.state is BreakerState.OPEN) == (counted, counted)


async def stale_trial(clock: FakeClock, deadline: float | None = None) -> tuple[Walk, Deployment]:
    """A half-open trial whose period ended while it ran: another trial failed,
    the cooldown passed, and the new period's two trials are out."""
    a = deployment("a", clock, consecutive_failures=1, cooldown_s=10, half_open_probes=2)
    a.state.failed(FIVE_XX)
    clock.advance(10)
    old = walk([a], clock, deadline=deadline, retries=0)
    assert await step(old) is a
    other = walk([a], clock, retries=0)
    assert await step(other) is a
    other.failed(a, FIVE_XX)  # reopens
    clock.advance(10)
    for _ in range(2):
        assert await step(walk([a], clock)) is a
    assert not a.state.breaker.available()
    return old, a


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "released", "caller gave up"])
async def test_a_stale_trials_outcome_decides_nothing_in_the_new_period(outcome: str) -> None:
    clock = FakeClock(1000.0)
    old, a = await stale_trial(clock, deadline=1015.0)
    if outcome == "succeeded":
        old.succeeded(a, 1000.0, None, 1)
    elif outcome == "failed":
        old.failed(a, FIVE_XX)
    elif outcome == "released":
        old.released(a)
    else:
        old.failed(a, TIMEOUT)  # at 1020, past its deadline
    assert a.state.breaker.state is BreakerState.HALF_OPEN
    assert not a.state.breaker.available()


# --- between rounds: backoff, Retry-After, the deadline ---------------------------------------


async def test_each_round_backs_off_within_base_times_two_to_the_round() -> None:
    clock, rng = FakeClock(1000.0), TopOfRange()
    a = deployment("a", clock, consecutive_failures=100)
    w = walk([a], clock, rng=rng, retries=3, backoff_base_s=0.001, backoff_max_s=0.003)
    for _ in range(4):
        assert await step(w) is a
        w.failed(a, FIVE_XX)
    assert await step(w) is None
    assert rng.ranges == [(0.0, 0.001), (0.0, 0.002), (0.0, 0.003)]


async def test_when_every_candidate_is_rate_limited_the_pause_waits_for_the_first() -> None:
    a = deployment("a", time.monotonic)
    b = deployment("b", time.monotonic)
    w = walk([a, b], time.monotonic, retries=1, backoff_base_s=0, backoff_max_s=1)
    for d, seconds in ((a, 0.05), (b, 0.5)):
        assert await step(w) is d
        w.failed(d, ProviderError(ErrorKind.RATE_LIMITED, "slow down", retry_after=seconds))
    started = time.monotonic()
    assert await asyncio.wait_for(w.next(), 2) is a
    assert 0.04 <= time.monotonic() - started < 0.4


@pytest.mark.parametrize(("retry_after", "goes_on"), [(0.05, True), (10, False)])
async def test_a_rate_limit_longer_than_the_longest_backoff_ends_the_walk(
    retry_after: float, goes_on: bool
) -> None:
    clock = FakeClock(0.0)  # exact: a wait of 0.05 is exactly backoff_max_s
    a = deployment("a", clock)
    w = walk([a], clock, retries=1, backoff_base_s=0, backoff_max_s=0.05)
    assert await step(w) is a
    w.failed(a, ProviderError(ErrorKind.RATE_LIMITED, "slow down", retry_after=retry_after))
    pending = asyncio.create_task(w.next())
    await asyncio.sleep(0.01)
    clock.advance(20)  # while it pauses, the rate limit runs out
    assert await asyncio.wait_for(pending, 1) is (a if goes_on else None)


@pytest.mark.parametrize(("deadline", "goes_on"), [(0.0101, True), (0.01, False), (0.005, False)])
async def test_no_pause_that_would_reach_the_deadline(deadline: float, goes_on: bool) -> None:
    clock, rng = FakeClock(0.0), TopOfRange()
    a = deployment("a", clock)
    w = walk([a], clock, deadline=deadline, rng=rng, retries=1, backoff_base_s=0.01)
    assert await step(w) is a
    w.failed(a, FIVE_XX)
    assert await asyncio.wait_for(w.next(), 1) is (a if goes_on else None)
    assert rng.ranges == [(0.0, 0.01)]
