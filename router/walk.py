"""The attempts of one call: which deployment next, backoff between rounds,
Retry-After, the deadline, and the error when none is left.

The attempt loops (`first_success` here, the streaming one in router.stream)
get a `WalkContext`, not the router: the router imports them, and a module
that imported it back would make a cycle.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from router import spans
from router.breaker import Ticket
from router.config import RetryConfig
from router.errors import AllProvidersFailed, ErrorKind, ProviderError
from router.plan import Deployment, Plan
from router.types import Request
from router.watchdog import Watchdogs

T = TypeVar("T")
log = logging.getLogger("infergate.routing")


@dataclass(frozen=True, slots=True)
class WalkContext:
    """The router's parts that its calls' attempts share."""

    clock: Callable[[], float]
    rng: random.Random
    watchdogs: Watchdogs
    debug: bool  # write ROUTING_DEBUG lines


def log_debug(line: dict[str, Any]) -> None:
    """One compact JSON object per line, so ROUTING_DEBUG output greps and parses;
    with tracing on, each names its trace."""
    if spans.ON:
        line["trace_id"] = spans.trace_id()
    log.info("ROUTING_DEBUG %s", json.dumps(line, separators=(",", ":")))


def log_plan(context: WalkContext, request: Request, plan: Plan) -> None:
    """Logged before the first attempt, so that a call that fails outright
    still shows which deployments it skipped and why."""
    if spans.ON:
        spans.annotate(
            {
                "infergate.alias": plan.alias,
                "infergate.strategy": plan.strategy,
                "infergate.candidates": ",".join(d.name for d in plan.candidates),
                "infergate.skipped": ",".join(f"{d.name}: {why}" for d, why in plan.skipped),
            }
        )
    if not context.debug:
        return
    candidates = [{"deployment": d.name, "skip": ""} for d in plan.candidates]
    candidates += [{"deployment": d.name, "skip": why} for d, why in plan.skipped]
    log_debug(
        {
            "request_id": request.request_id,
            "alias": plan.alias,
            "strategy": plan.strategy,
            "candidates": candidates,
            "chosen": plan.candidates[0].name if plan.candidates else None,
        }
    )


def backoff(round_: int, retry: RetryConfig, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, base * 2^round))."""
    return rng.uniform(0.0, min(retry.backoff_max_s, retry.backoff_base_s * 2.0**round_))


class Walk:
    """The attempts of one call: the plan's candidates, then up to `retries`
    more rounds after a full-jitter backoff, skipping deployments that became
    unusable, never past the deadline."""

    def __init__(
        self, context: WalkContext, plan: Plan, deadline: float | None, request_id: str = ""
    ) -> None:
        self._context = context
        self._plan = plan
        self._deadline = deadline
        self._request_id = request_id
        self.ticket: Ticket | None = None  # the current attempt's admission
        self._round = 0
        self._next = 0
        self.attempts: list[tuple[str, ProviderError]] = []
        self._skipped = {d.name: why for d, why in plan.skipped}
        # Answered UNIMPLEMENTED: never asked again (by identity: a fallback
        # alias may have a deployment of the same name).
        self._unable: set[int] = set()
        self._retryable = True
        self.span = spans.NO_SPAN  # the current attempt's (tracing on)

    def budget(self, limit: float) -> float:
        """Seconds an attempt step may take: `limit`, cut to the deadline."""
        if self._deadline is None:
            return limit
        return max(0.0, min(limit, self._deadline - self._context.clock()))

    def timed_out(self, what: str, limit: float) -> ProviderError:
        """The error for a step that ran out of time: its own limit, or the deadline."""
        if self._deadline is not None and self._context.clock() >= self._deadline:
            return ProviderError(ErrorKind.TIMEOUT, f"{what}: the caller's deadline passed")
        return ProviderError(ErrorKind.TIMEOUT, f"{what} within {limit:g}s")

    def stalled(self, limit: float) -> ProviderError:
        """A started stream went quiet: cut it (the caller's deadline, if that
        is what passed, says so instead)."""
        if self._deadline is not None and self._context.clock() >= self._deadline:
            return self.timed_out("stream stalled", limit)
        return ProviderError(ErrorKind.INTERRUPTED, f"stream stalled: no chunk for {limit:g}s")

    async def next(self) -> Deployment | None:
        plan, clock = self._plan, self._context.clock
        while self._retryable:
            if self._next == len(plan.candidates):
                self._round += 1
                self._next = 0
                unable = all(id(d) in self._unable for d in plan.candidates)
                if self._round > plan.retry.retries or unable:
                    return None
                if not await self._pause():
                    return None
            deployment = plan.candidates[self._next]
            self._next += 1
            if id(deployment) in self._unable:
                continue
            if self._deadline is not None and clock() >= self._deadline:
                return None
            why = deployment.state.skip_reason()
            self.ticket = None if why else deployment.state.breaker.acquire()
            if self.ticket is None:
                self._skipped[deployment.name] = why or "circuit half-open: trial calls in flight"
                continue
            if spans.ON:
                self.span = spans.start(
                    "infergate.attempt",
                    {
                        "infergate.deployment": deployment.name,
                        "infergate.provider": deployment.config.provider,
                        "infergate.attempt": len(self.attempts) + 1,
                        "infergate.retry": self._round,
                        "infergate.fallback": self._next > 1,
                    },
                )
            return deployment
        return None

    def succeeded(
        self, deployment: Deployment, started: float, first_chunk: float | None, tokens: int
    ) -> None:
        deployment.state.succeeded(started, first_chunk, tokens, self.ticket)
        self._end("ok")
        self._debug(served=deployment.name)

    def released(self, deployment: Deployment) -> None:
        """The attempt ended without a verdict on the upstream (cancelled)."""
        deployment.state.breaker.release(self.ticket)
        self._end("released")

    def failed(self, deployment: Deployment, error: ProviderError) -> None:
        self.attempts.append((deployment.name, error))
        self._retryable = error.retryable
        caller_gave_up = (
            error.kind is ErrorKind.TIMEOUT
            and self._deadline is not None
            and self._context.clock() >= self._deadline
        )
        if error.kind is ErrorKind.UNIMPLEMENTED:
            self._unable.add(id(deployment))
        if caller_gave_up or error.kind is ErrorKind.UNIMPLEMENTED:
            # The caller's short deadline, or a call the backend cannot serve at
            # all, says nothing of the upstream's health.
            self.released(deployment)
        else:
            deployment.state.failed(error, self.ticket)
        self._end(str(error.kind), error)
        self._debug(failed=deployment.name, kind=str(error.kind), error=str(error))

    def _end(self, outcome: str, error: ProviderError | None = None) -> None:
        if not spans.ON or self.span is spans.NO_SPAN:
            return
        span, self.span = self.span, spans.NO_SPAN
        span.set_attribute("infergate.outcome", outcome)
        if error is not None:
            spans.failed(span, error)
        span.end()

    def _debug(self, **fields: str) -> None:
        if self._context.debug:
            log_debug({"request_id": self._request_id, "alias": self._plan.alias, **fields})

    def exhausted(self) -> AllProvidersFailed:
        tried = {name for name, _ in self.attempts}
        skipped = [(n, why) for n, why in self._skipped.items() if n not in tried]
        return AllProvidersFailed(self._plan.alias, self.attempts, skipped)

    async def _pause(self) -> bool:
        """Back off before another round; False when that would pass the deadline,
        or when every candidate is rate limited for longer than backoff_max_s."""
        retry, clock = self._plan.retry, self._context.clock
        delay = backoff(self._round - 1, retry, self._context.rng)
        now = clock()
        waits = [d.state.rate_limited_until - now for d in self._plan.candidates]
        if all(w > 0 for w in waits):
            if min(waits) > retry.backoff_max_s:
                return False
            delay = max(delay, min(waits))
        if self._deadline is not None and now + delay >= self._deadline:
            return False
        await asyncio.sleep(delay)
        return True


async def first_success(
    context: WalkContext,
    plan: Plan,
    deadline: float | None,
    request_id: str,
    call: Callable[[Deployment], Awaitable[T]],
    tokens: Callable[[T], int],
) -> tuple[Deployment, T]:
    """Walk the plan with unary calls until one succeeds."""
    walk = Walk(context, plan, deadline, request_id)
    watchdog = context.watchdogs.watchdog()
    limit = plan.retry.attempt_timeout_s
    while (deployment := await walk.next()) is not None:
        state = deployment.state
        started = context.clock()
        state.in_flight += 1
        watchdog.arm(walk.budget(limit))
        try:
            with spans.current(walk.span):
                result = await call(deployment)
        except ProviderError as exc:
            error = exc
        except asyncio.CancelledError:
            if not watchdog.expired():
                walk.released(deployment)
                raise
            error = walk.timed_out("no answer", limit)
        except BaseException:
            walk.released(deployment)
            raise
        else:
            walk.succeeded(deployment, started, None, tokens(result))
            return deployment, result
        finally:
            watchdog.disarm()
            state.in_flight -= 1
        walk.failed(deployment, error)
    raise walk.exhausted()
