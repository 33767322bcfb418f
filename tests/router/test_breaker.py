"""The circuit breaker and a deployment's state, driven by an injected clock.

Nothing here sleeps: the clock only moves when a test advances it.
"""

from __future__ import annotations

from typing import Any

import pytest

from router.breaker import BreakerState, CircuitBreaker
from router.config import BreakerConfig
from router.errors import ErrorKind, ProviderError
from router.state import DeploymentState


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# The failure-rate rule on its own: the consecutive rule would never trip first.
RATE_ONLY = BreakerConfig(min_requests=10, failure_rate=0.5, consecutive_failures=100)


def breaker(clock: FakeClock, **config: Any) -> CircuitBreaker:
    return CircuitBreaker(BreakerConfig(**config), clock)


def run(b: CircuitBreaker, outcomes: str) -> None:
    """Feed the breaker calls in order: "s" a success, "f" a timeout."""
    for outcome in outcomes:
        if outcome == "s":
            b.success()
        else:
            b.failure(ErrorKind.TIMEOUT, "read timed out")


def open_then_cool(b: CircuitBreaker, clock: FakeClock) -> None:
    """Trip `b` by consecutive failures, then let its cooldown pass."""
    run(b, "f" * b.config.consecutive_failures)
    assert b.state is BreakerState.OPEN
    clock.advance(b.config.cooldown_s)
    assert b.state is BreakerState.HALF_OPEN


# --- consecutive failures -----------------------------------------------------------------


def test_opens_after_consecutive_failures_and_not_one_before() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=3, cooldown_s=15, min_requests=100)
    run(b, "ff")
    assert b.state is BreakerState.CLOSED
    assert b.available() and b.retry_in == 0.0
    run(b, "f")
    assert b.state is BreakerState.OPEN
    assert b.reason == "3 consecutive failures"
    assert not b.available()
    assert not b.acquire()


def test_a_success_resets_the_consecutive_count() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=3, min_requests=100)
    run(b, "ffsffsff")
    assert b.state is BreakerState.CLOSED


def test_retry_in_counts_down_with_the_clock() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=1, cooldown_s=15)
    run(b, "f")
    assert b.retry_in == 15.0
    clock.advance(4)
    assert b.retry_in == 11.0
    clock.advance(10.5)
    assert b.retry_in == 0.5
    assert not b.available()
    clock.advance(0.5)
    assert b.retry_in == 0.0
    assert b.available()


# --- failure rate -------------------------------------------------------------------------


def test_below_the_volume_even_all_failures_do_not_open() -> None:
    b = CircuitBreaker(RATE_ONLY, FakeClock())
    run(b, "f" * 9)
    assert b.window() == (9, 9)
    assert b.state is BreakerState.CLOSED


def test_reaching_the_volume_at_the_failure_rate_opens() -> None:
    b = CircuitBreaker(RATE_ONLY, FakeClock())
    run(b, "sfsfsfsfs")
    assert b.state is BreakerState.CLOSED  # 4/9: below the volume, and the rate
    run(b, "f")
    assert b.state is BreakerState.OPEN
    assert b.reason == "5/10 calls failed in the last 30s"


def test_reaching_the_volume_below_the_failure_rate_stays_closed() -> None:
    b = CircuitBreaker(RATE_ONLY, FakeClock())
    run(b, "ssfsfsfssf")
    assert b.window() == (10, 4)
    assert b.state is BreakerState.CLOSED
    assert b.available()


def test_failures_inside_the_window_still_count() -> None:
    clock = FakeClock()
    b = CircuitBreaker(RATE_ONLY, clock)
    run(b, "f" * 9)
    clock.advance(29.5)  # the last bucket of the 30 s window
    run(b, "f")
    assert b.state is BreakerState.OPEN


def test_the_rolling_window_forgets_old_failures() -> None:
    clock = FakeClock()
    b = CircuitBreaker(RATE_ONLY, clock)
    run(b, "f" * 9)
    clock.advance(RATE_ONLY.window_s)
    assert b.window() == (0, 0)
    run(b, "ff")
    assert b.window() == (2, 2)
    assert b.state is BreakerState.CLOSED


# --- open -> half-open -> closed / open ---------------------------------------------------


def test_open_turns_half_open_exactly_when_the_cooldown_has_passed() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=2, cooldown_s=15)
    run(b, "ff")
    clock.advance(14.75)
    assert b.state is BreakerState.OPEN
    assert not b.available()
    clock.advance(0.25)  # now == opened + cooldown, exactly
    assert b.state is BreakerState.HALF_OPEN
    assert b.available()


def test_half_open_admits_exactly_the_configured_trials() -> None:
    clock = FakeClock()
    b = breaker(clock, half_open_probes=3)
    open_then_cool(b, clock)
    assert all(b.acquire() for _ in range(3))
    assert not b.available()
    assert not b.acquire()
    assert b.state is BreakerState.HALF_OPEN


def test_all_trials_succeeding_closes_it_with_a_fresh_window() -> None:
    clock = FakeClock()
    b = breaker(clock, half_open_probes=2, consecutive_failures=5, min_requests=10)
    open_then_cool(b, clock)
    assert b.acquire() and b.acquire()
    b.success()
    assert b.state is BreakerState.HALF_OPEN
    b.success()
    assert b.state is BreakerState.CLOSED
    assert b.available()
    # The failures that opened it are forgotten: 1 failure in 5 calls is no verdict.
    assert b.window() == (0, 0)
    run(b, "ssssf")
    assert b.state is BreakerState.CLOSED


def test_one_failing_trial_reopens_for_another_cooldown() -> None:
    clock = FakeClock()
    b = breaker(clock, half_open_probes=3, cooldown_s=15)
    open_then_cool(b, clock)
    assert b.acquire() and b.acquire() and b.acquire()
    b.success()
    b.failure(ErrorKind.UPSTREAM_5XX, "502 bad gateway")
    assert b.state is BreakerState.OPEN
    assert "trial" in b.reason
    assert "502 bad gateway" in b.reason
    assert b.retry_in == 15.0
    clock.advance(15)
    assert b.state is BreakerState.HALF_OPEN
    assert b.acquire()  # a fresh set of trial slots


def test_release_gives_a_trial_slot_back() -> None:
    clock = FakeClock()
    b = breaker(clock, half_open_probes=2)
    open_then_cool(b, clock)
    assert b.acquire() and b.acquire()
    assert not b.acquire()
    b.release()  # a trial was cancelled: no verdict
    assert b.state is BreakerState.HALF_OPEN
    assert b.acquire()
    assert not b.acquire()


def test_a_client_error_on_a_trial_gives_the_slot_back() -> None:
    clock = FakeClock()
    b = breaker(clock, half_open_probes=1)
    open_then_cool(b, clock)
    assert b.acquire()
    b.failure(ErrorKind.BAD_REQUEST, "max_tokens too large")
    assert b.state is BreakerState.HALF_OPEN
    assert b.acquire()


def test_release_while_closed_changes_nothing() -> None:
    b = breaker(FakeClock())
    b.release()
    assert b.state is BreakerState.CLOSED
    assert b.acquire()


# --- what counts --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [ErrorKind.BAD_REQUEST, ErrorKind.CANCELLED])
def test_client_errors_never_count(kind: ErrorKind) -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=2, min_requests=1, failure_rate=0.1)
    for _ in range(50):
        assert b.acquire()
        b.failure(kind, "the caller's doing")
    assert b.state is BreakerState.CLOSED
    assert b.window() == (0, 0)


def test_auth_opens_at_once_for_the_auth_cooldown() -> None:
    clock = FakeClock()
    b = breaker(clock, cooldown_s=15, auth_cooldown_s=300, consecutive_failures=5)
    b.failure(ErrorKind.AUTH, "401 invalid api key")
    assert b.state is BreakerState.OPEN
    assert "credentials" in b.reason
    assert "401 invalid api key" in b.reason
    assert b.retry_in == 300.0
    clock.advance(15)
    assert b.state is BreakerState.OPEN
    clock.advance(285)
    assert b.state is BreakerState.HALF_OPEN


def test_configure_keeps_an_open_breaker_open() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=2, cooldown_s=15)
    run(b, "ff")
    clock.advance(5)
    new = BreakerConfig(consecutive_failures=50, cooldown_s=1, buckets=5, window_s=10)
    b.configure(new)
    assert b.config == new
    assert b.state is BreakerState.OPEN
    assert b.reason == "2 consecutive failures"
    assert b.retry_in == 10.0  # the cooldown it opened with still runs
    clock.advance(10)
    assert b.state is BreakerState.HALF_OPEN


# --- DeploymentState ----------------------------------------------------------------------


def deployment(clock: FakeClock, **config: Any) -> DeploymentState:
    return DeploymentState(BreakerConfig(**config), clock, 0.5)


def test_a_healthy_deployment_has_no_skip_reason() -> None:
    assert deployment(FakeClock()).skip_reason() == ""


def test_skip_reason_for_an_open_breaker() -> None:
    clock = FakeClock()
    state = deployment(clock, consecutive_failures=3, cooldown_s=15)
    for _ in range(3):
        state.failed(ProviderError(ErrorKind.UNAVAILABLE, "connection refused"))
    assert state.skip_reason() == "circuit open (3 consecutive failures); half-open in 15.0s"
    clock.advance(5)
    assert state.skip_reason() == "circuit open (3 consecutive failures); half-open in 10.0s"
    assert (state.requests, state.failures) == (3, 3)


def test_skip_reason_for_half_open_with_the_trials_out() -> None:
    clock = FakeClock()
    state = deployment(clock, consecutive_failures=1, cooldown_s=15, half_open_probes=1)
    state.failed(ProviderError(ErrorKind.TIMEOUT, "read timed out"))
    clock.advance(15)
    assert state.skip_reason() == ""  # a trial may go
    assert state.breaker.acquire()
    assert state.skip_reason() == "circuit half-open: trial calls in flight"


def test_skip_reason_while_rate_limited_until_the_clock_passes_it() -> None:
    clock = FakeClock()
    state = deployment(clock)
    state.failed(ProviderError(ErrorKind.RATE_LIMITED, "429", retry_after=2.5))
    assert state.breaker.state is BreakerState.CLOSED
    assert state.skip_reason() == "rate limited by the upstream for 2.5s more"
    clock.advance(1)
    assert state.skip_reason() == "rate limited by the upstream for 1.5s more"
    state.failed(ProviderError(ErrorKind.RATE_LIMITED, "429", retry_after=0.5))
    assert state.skip_reason() == "rate limited by the upstream for 1.5s more"  # not shortened
    clock.advance(1.5)
    assert state.skip_reason() == ""


def test_skip_reason_for_a_failed_probe() -> None:
    state = deployment(FakeClock())
    state.probe_error = "connect: connection refused"
    assert state.skip_reason() == "health probe failed: connect: connection refused"
    state.probe_error = ""
    assert state.skip_reason() == ""


def test_streams_update_the_time_to_first_chunk_ewma() -> None:
    clock = FakeClock(100.0)
    state = deployment(clock)
    state.succeeded(started=100.0, first_chunk=100.5, output_tokens=10)
    assert state.ewma_ttft_s == 0.5
    state.succeeded(started=200.0, first_chunk=201.5, output_tokens=10)
    assert state.ewma_ttft_s == pytest.approx(0.5 + 0.5 * (1.5 - 0.5))  # 1.0
    state.succeeded(started=300.0, first_chunk=300.25, output_tokens=10)
    assert state.ewma_ttft_s == pytest.approx(1.0 + 0.5 * (0.25 - 1.0))  # 0.625
    assert state.ewma_token_s is None
    assert state.requests == 3


def test_unary_calls_update_the_per_token_ewma() -> None:
    clock = FakeClock(10.0)
    state = deployment(clock)
    state.succeeded(started=8.0, first_chunk=None, output_tokens=4)
    assert state.ewma_token_s == 0.5
    clock.now = 20.0
    state.succeeded(started=17.0, first_chunk=None, output_tokens=2)
    assert state.ewma_token_s == pytest.approx(0.5 + 0.5 * (1.5 - 0.5))  # 1.0
    clock.now = 30.0
    state.succeeded(started=29.75, first_chunk=None, output_tokens=0)  # counted as 1 token
    assert state.ewma_token_s == pytest.approx(1.0 + 0.5 * (0.25 - 1.0))  # 0.625
    assert state.ewma_ttft_s is None


def test_a_success_clears_the_last_error() -> None:
    state = deployment(FakeClock())
    state.failed(ProviderError(ErrorKind.TIMEOUT, "read timed out"))
    assert state.last_error is not None
    state.succeeded(started=0.0, first_chunk=0.25, output_tokens=1)
    assert state.last_error is None
    assert (state.requests, state.failures) == (2, 1)


def test_an_ordinary_call_ending_in_half_open_frees_no_trial_slot() -> None:
    clock = FakeClock()
    b = CircuitBreaker(BreakerConfig(consecutive_failures=1, cooldown_s=5), clock)
    old = b.acquire()  # admitted while closed: a long stream, say
    assert old is not None and old.trial == 0
    assert b.acquire() is not None
    b.failure(ErrorKind.UPSTREAM_5XX, "boom")  # another call opens it
    clock.advance(5)
    trial = b.acquire()
    assert trial is not None and trial.trial > 0
    assert b.acquire() is None  # the one trial slot is taken
    b.release(old)  # the old stream's client went away
    assert b.acquire() is None  # ... which frees nothing
    b.success(old)  # nor does its late success decide anything
    assert b.state is BreakerState.HALF_OPEN
    b.success(trial)
    assert b.state is BreakerState.CLOSED


# --- issue 14 (mutation testing): gaps the mutants showed -----------------------------------


def test_a_fresh_deployment_has_no_error_and_no_probe_verdict() -> None:
    state = deployment(FakeClock())
    assert (state.last_error, state.probe_error, state.last_probe_time) == (None, "", None)
    assert (state.requests, state.failures, state.in_flight) == (0, 0, 0)


def test_usable_agrees_with_skip_reason_in_every_state() -> None:
    clock = FakeClock()
    half_open = deployment(clock, consecutive_failures=1, cooldown_s=10)
    half_open.failed(ProviderError(ErrorKind.TIMEOUT, "read timed out"))
    clock.advance(10)
    healthy = deployment(clock)
    probed = deployment(clock)
    probed.probe_error = "connect: connection refused"
    limited = deployment(clock)
    limited.rate_limited_until = clock.now + 0.5
    opened = deployment(clock, consecutive_failures=1, cooldown_s=10)
    opened.failed(ProviderError(ErrorKind.TIMEOUT, "read timed out"))
    states = {"healthy": healthy, "probe failed": probed, "rate limited": limited,
              "open": opened, "half-open": half_open}  # fmt: skip
    usable = {name: s.usable(clock.now) for name, s in states.items()}
    assert usable == {"healthy": True, "probe failed": False, "rate limited": False,
                      "open": False, "half-open": True}  # fmt: skip
    assert {name: s.skip_reason() == "" for name, s in states.items()} == usable


def test_a_rate_limit_under_a_second_is_still_a_skip_reason() -> None:
    clock = FakeClock()
    state = deployment(clock)
    state.failed(ProviderError(ErrorKind.RATE_LIMITED, "429", retry_after=0.5))
    assert state.skip_reason() == "rate limited by the upstream for 0.5s more"
    assert not state.usable(clock.now)


def test_an_upstream_refusing_the_key_opens_the_deployment_for_the_auth_cooldown() -> None:
    clock = FakeClock()
    state = deployment(clock, consecutive_failures=5, auth_cooldown_s=300)
    state.failed(ProviderError(ErrorKind.AUTH, "invalid api key"))
    assert state.breaker.state is BreakerState.OPEN
    assert state.skip_reason() == (
        "circuit open (upstream refused the credentials: invalid api key); half-open in 300.0s"
    )


def test_a_deployments_late_verdicts_on_an_ordinary_call_decide_nothing_in_half_open() -> None:
    clock = FakeClock()
    state = deployment(clock, consecutive_failures=1, cooldown_s=5)
    old = state.breaker.acquire()  # admitted while closed
    state.failed(ProviderError(ErrorKind.UPSTREAM_5XX, "boom"))  # another call opens it
    clock.advance(5)
    trial = state.breaker.acquire()
    assert trial is not None
    state.succeeded(started=0.0, first_chunk=0.1, output_tokens=1, ticket=old)
    assert state.breaker.state is BreakerState.HALF_OPEN
    state.failed(ProviderError(ErrorKind.UPSTREAM_5XX, "late"), old)
    assert state.breaker.state is BreakerState.HALF_OPEN
    state.succeeded(started=0.0, first_chunk=0.1, output_tokens=1, ticket=trial)
    assert state.breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize(("taken", "more"), [(1, 3), (2, 2)])
def test_a_trial_that_succeeds_frees_its_slot_for_another(taken: int, more: int) -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=1, cooldown_s=5, half_open_probes=3)
    run(b, "f")
    clock.advance(5)
    trials = [b.acquire() for _ in range(taken)]
    b.success(trials[0])  # one of three needed successes: still half-open
    assert b.state is BreakerState.HALF_OPEN
    extra = 0
    while extra < 10 and b.acquire() is not None:  # bounded: a broken breaker fails fast
        extra += 1
    assert extra == more


def test_a_stale_client_error_frees_no_slot_of_the_new_period() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=1, cooldown_s=5, half_open_probes=2)
    run(b, "f")
    clock.advance(5)
    stale = b.acquire()
    b.failure(ErrorKind.TIMEOUT, "trial failed", b.acquire())  # reopens
    clock.advance(5)
    assert b.acquire() is not None and b.acquire() is not None
    b.failure(ErrorKind.BAD_REQUEST, "400", stale)
    assert not b.available()
    b.failure(ErrorKind.TIMEOUT, "late", stale)  # nor does a stale failure reopen it
    assert b.state is BreakerState.HALF_OPEN


def test_after_recovery_it_takes_the_full_count_to_open_again() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=3, cooldown_s=5, min_requests=100)
    open_then_cool(b, clock)
    b.success(b.acquire())
    assert b.state is BreakerState.CLOSED
    run(b, "ff")
    assert b.state is BreakerState.CLOSED
    run(b, "f")
    assert b.state is BreakerState.OPEN


def test_the_window_forgets_old_calls_at_any_clock_offset() -> None:
    clock = FakeClock(1000.0)  # a monotonic clock starts anywhere
    b = breaker(clock, window_s=30, buckets=10, min_requests=100, consecutive_failures=100)
    run(b, "fff")
    clock.advance(10)
    run(b, "ss")
    assert b.window() == (5, 3)
    clock.advance(25)  # the failures are 35 s old, the successes 25 s
    assert b.window() == (2, 0)
    clock.advance(10)
    assert b.window() == (0, 0)
