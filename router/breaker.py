"""A deployment's circuit breaker, after Hystrix.

closed -> open when, over a rolling window, the failure rate reaches the
threshold (once the window holds `min_requests`), or after N consecutive
failures; open -> half-open once the cooldown has passed; half-open lets
`half_open_probes` trial calls through: all succeeding closes it, any failing
reopens it. Client errors never count. An upstream that refuses our
credentials opens it at once, for the longer auth cooldown.

Synchronous, no I/O, time from the injected clock: tests drive the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from router.config import BreakerConfig
from router.errors import ErrorKind

# The caller's mistakes, not the upstream's: they say nothing about its health.
_NOT_COUNTED = frozenset({ErrorKind.BAD_REQUEST, ErrorKind.CANCELLED, ErrorKind.UNIMPLEMENTED})
_NEVER = -(1 << 62)


@dataclass(frozen=True, slots=True)
class Ticket:
    """One call let through. `trial` is the half-open generation it probes, 0
    for an ordinary call: only the current generation's trials move the
    half-open verdict, so a call admitted while closed that ends during
    half-open frees no trial slot and decides nothing."""

    trial: int = 0


_ORDINARY = Ticket()


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, config: BreakerConfig, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.configure(config)
        self._state = BreakerState.CLOSED
        self._open_until = 0.0
        self._consecutive = 0
        self._probes_out = 0  # half-open trial calls in flight
        self._probes_ok = 0
        self._generation = 0  # counts half-open periods, for tickets
        self.reason = ""  # why it last opened

    def configure(self, config: BreakerConfig) -> None:
        """Adopt a config (at start, or a changed one on hot reload): the window
        restarts, the state stays."""
        self.config = config
        self._width = config.window_s / config.buckets
        self._forget()

    def _forget(self) -> None:
        """An empty window. Bucket epochs start far in the past so that no
        clock value, however small, sees them as live."""
        n = self.config.buckets
        self._epochs, self._ok, self._failed = [_NEVER] * n, [0] * n, [0] * n

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._open_until:
            self._state = BreakerState.HALF_OPEN
            self._probes_out = self._probes_ok = 0
            self._generation += 1
        return self._state

    @property
    def closed(self) -> bool:
        """Closed: no time check needed (only open turns half-open by time)."""
        return self._state is BreakerState.CLOSED

    @property
    def retry_in(self) -> float:
        """Seconds until an open breaker turns half-open (0 otherwise)."""
        return (
            max(0.0, self._open_until - self._clock()) if self.state is BreakerState.OPEN else 0.0
        )

    def available(self) -> bool:
        """Whether a call would be let through now. Takes nothing (dry runs use it)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        return state is BreakerState.HALF_OPEN and self._probes_out < self.config.half_open_probes

    def acquire(self) -> Ticket | None:
        """Let one call through if allowed (None if not); in half-open this
        takes a trial slot, which `success`, `failure` or `release` with the
        ticket gives back."""
        if not self.available():
            return None
        if self._state is BreakerState.HALF_OPEN:
            self._probes_out += 1
            return Ticket(self._generation)
        return _ORDINARY

    def _current_trial(self, ticket: Ticket | None) -> bool:
        """Whether the call probes this half-open period (no ticket: assume so)."""
        return ticket is None or ticket.trial == self._generation

    def success(self, ticket: Ticket | None = None) -> None:
        if self._state is BreakerState.HALF_OPEN:
            if self._current_trial(ticket):
                self._probes_out = max(0, self._probes_out - 1)
                self._probes_ok += 1
                if self._probes_ok >= self.config.half_open_probes:
                    self._close()
            return
        if self._state is BreakerState.OPEN:
            return  # a call from before it opened: no verdict now
        self._consecutive = 0
        self._ok[self._bucket()] += 1

    def failure(self, kind: ErrorKind, detail: str = "", ticket: Ticket | None = None) -> None:
        if kind in _NOT_COUNTED:
            self.release(ticket)
            return
        if kind is ErrorKind.AUTH:
            self._open(self.config.auth_cooldown_s, f"upstream refused the credentials: {detail}")
            return
        if self._state is BreakerState.HALF_OPEN:
            if self._current_trial(ticket):
                self._open(self.config.cooldown_s, f"trial call failed: {kind}: {detail}")
            return
        if self._state is BreakerState.OPEN:
            return
        self._consecutive += 1
        self._failed[self._bucket()] += 1
        calls, failed = self.window()
        if self._consecutive >= self.config.consecutive_failures:
            self._open(self.config.cooldown_s, f"{self._consecutive} consecutive failures")
        elif calls >= self.config.min_requests and failed / calls >= self.config.failure_rate:
            self._open(
                self.config.cooldown_s,
                f"{failed}/{calls} calls failed in the last {self.config.window_s:g}s",
            )

    def release(self, ticket: Ticket | None = None) -> None:
        """A let-through call ended without a verdict (cancelled, client error)."""
        if self._state is BreakerState.HALF_OPEN and self._current_trial(ticket):
            self._probes_out = max(0, self._probes_out - 1)

    def window(self) -> tuple[int, int]:
        """(calls, failures) over the rolling window."""
        oldest = int(self._clock() / self._width) - self.config.buckets + 1
        live = [i for i, epoch in enumerate(self._epochs) if epoch >= oldest]
        return sum(self._ok[i] + self._failed[i] for i in live), sum(self._failed[i] for i in live)

    def _bucket(self) -> int:
        epoch = int(self._clock() / self._width)
        i = epoch % self.config.buckets
        if self._epochs[i] != epoch:
            self._epochs[i], self._ok[i], self._failed[i] = epoch, 0, 0
        return i

    def _open(self, cooldown: float, reason: str) -> None:
        self._state = BreakerState.OPEN
        self._open_until = self._clock() + cooldown
        self._probes_out = self._probes_ok = 0
        self.reason = reason

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._probes_out = self._probes_ok = 0
        self._forget()  # a fresh window after recovery
