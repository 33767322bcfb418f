"""What the router knows about one deployment: breaker, latency, load, health.

One `DeploymentState` per (alias, deployment name) lives across config
reloads, so a reload forgets neither an open breaker nor learned latencies.
"""

from __future__ import annotations

from collections.abc import Callable

from router.breaker import BreakerState, CircuitBreaker, Ticket
from router.config import BreakerConfig
from router.errors import ProviderError


class DeploymentState:
    def __init__(
        self, breaker: BreakerConfig, clock: Callable[[], float], ewma_alpha: float
    ) -> None:
        self.clock = clock
        self.breaker = CircuitBreaker(breaker, clock)
        self.alpha = ewma_alpha
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.last_error: ProviderError | None = None
        self.ewma_ttft_s: float | None = None  # streams: time to first chunk
        self.ewma_token_s: float | None = None  # unary calls: seconds per output token
        self.rate_limited_until = 0.0
        self.probe_error = ""  # the last active probe's failure ("" when it passed)
        self.last_probe_time: float | None = None  # wall clock, for reports

    def usable(self, now: float) -> bool:
        """The common case, cheaply: closed breaker, no rate limit, probe passing."""
        return (
            self.breaker.closed and self.rate_limited_until <= now and not self.probe_error
        ) or not self.skip_reason()

    def skip_reason(self) -> str:
        """Why a call should not go here now ("" when it may). No side effects."""
        if not self.breaker.available():
            if self.breaker.state is BreakerState.OPEN:
                breaker = self.breaker
                return f"circuit open ({breaker.reason}); half-open in {breaker.retry_in:.1f}s"
            return "circuit half-open: trial calls in flight"
        wait = self.rate_limited_until - self.clock()
        if wait > 0:
            return f"rate limited by the upstream for {wait:.1f}s more"
        if self.probe_error:
            return f"health probe failed: {self.probe_error}"
        return ""

    def succeeded(
        self,
        started: float,
        first_chunk: float | None,
        output_tokens: int,
        ticket: Ticket | None = None,
    ) -> None:
        self.requests += 1
        self.last_error = None
        self.breaker.success(ticket)
        if first_chunk is not None:
            self.ewma_ttft_s = self._ewma(self.ewma_ttft_s, first_chunk - started)
        else:
            per_token = (self.clock() - started) / max(output_tokens, 1)
            self.ewma_token_s = self._ewma(self.ewma_token_s, per_token)

    def failed(self, error: ProviderError, ticket: Ticket | None = None) -> None:
        self.requests += 1
        self.failures += 1
        self.last_error = error
        self.breaker.failure(error.kind, str(error), ticket)
        if error.retry_after:
            self.rate_limited_until = max(self.rate_limited_until, self.clock() + error.retry_after)

    def _ewma(self, current: float | None, sample: float) -> float:
        return sample if current is None else current + self.alpha * (sample - current)
