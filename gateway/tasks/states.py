"""The task state machine: synchronous, every change timestamped by the
caller's clock, illegal changes refused.

    PENDING -> PROCESSING -> SUCCESS | FAILURE
                          -> RETRYING -> PENDING        (attempts left)
                          -> DEAD_LETTERED -> PENDING   (none left; requeue)
                          -> PENDING                    (released, or its worker lost)
    PENDING | RETRYING -> CANCELLED
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from gateway.tasks.errors import IllegalTransition
from gateway.tasks.model import Task, TaskState, Transition, new_id
from router import spans

S = TaskState
ALLOWED: dict[TaskState, frozenset[TaskState]] = {
    S.PENDING: frozenset({S.PROCESSING, S.CANCELLED}),
    S.PROCESSING: frozenset({S.SUCCESS, S.FAILURE, S.RETRYING, S.DEAD_LETTERED, S.PENDING}),
    S.RETRYING: frozenset({S.PENDING, S.CANCELLED}),
    S.DEAD_LETTERED: frozenset({S.PENDING}),
    S.SUCCESS: frozenset(),
    S.FAILURE: frozenset(),
    S.CANCELLED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n (from 1) that failed waits
    base * 2**(n-1), capped at max_s, minus up to `jitter` of it at random."""

    max_attempts: int = 5
    base_s: float = 1.0
    max_s: float = 300.0
    jitter: float = 0.5

    def nominal_delay(self, attempt: int) -> float:
        return float(min(self.max_s, self.base_s * 2 ** (attempt - 1)))

    def delay(self, attempt: int, rng: random.Random) -> float:
        nominal = self.nominal_delay(attempt)
        return nominal * (1 - self.jitter * rng.random())


def new_task(
    tenant: str, type: str, payload: Mapping[str, Any], idempotency_key: str, now: float
) -> Task:
    carrier: dict[str, str] = {}
    spans.inject(carrier)  # nothing with tracing off
    return Task(
        id=new_id(now),
        tenant=tenant,
        type=type,
        payload=payload,
        state=S.PENDING,
        transitions=(Transition(S.PENDING, now),),
        idempotency_key=idempotency_key,
        traceparent=carrier.get("traceparent", ""),
    )


def advance(task: Task, state: TaskState, now: float, reason: str = "", **changes: Any) -> Task:
    """`task` moved to `state`; raises IllegalTransition where the table forbids it."""
    if state not in ALLOWED[task.state]:
        raise IllegalTransition(task.id, task.state.name, state.name)
    transition = Transition(state, now, reason)
    return replace(task, state=state, transitions=(*task.transitions, transition), **changes)


def start(task: Task, now: float) -> Task:
    return advance(task, S.PROCESSING, now, attempts=task.attempts + 1, next_attempt_time=None)


def reclaim(task: Task, now: float, policy: RetryPolicy) -> Task:
    """A PROCESSING task whose worker went silent: it runs again, unless it
    already used every attempt (a task that kills its workers ends here)."""
    if task.attempts >= policy.max_attempts:
        return advance(task, S.DEAD_LETTERED, now, "worker lost", error="worker lost")
    return start(advance(task, S.PENDING, now, "worker lost"), now)


def succeed(task: Task, result: Mapping[str, Any], now: float) -> Task:
    return advance(task, S.SUCCESS, now, result=result, error="")


def fail(
    task: Task,
    error: str,
    now: float,
    policy: RetryPolicy,
    rng: random.Random,
    retryable: bool = True,
) -> Task:
    """FAILURE if not retryable; RETRYING with the next attempt's time while
    attempts are left; DEAD_LETTERED after the last."""
    if not retryable:
        return advance(task, S.FAILURE, now, error, error=error)
    if task.attempts >= policy.max_attempts:
        return advance(task, S.DEAD_LETTERED, now, error, error=error)
    due = now + policy.delay(task.attempts, rng)
    return advance(task, S.RETRYING, now, error, error=error, next_attempt_time=due)


def due(task: Task, now: float) -> Task:
    return advance(task, S.PENDING, now, next_attempt_time=None)


def release(task: Task, now: float) -> Task:
    """A stopping worker hands its task back: the attempt does not count."""
    return advance(task, S.PENDING, now, "released", attempts=max(0, task.attempts - 1))


def cancel(task: Task, now: float) -> Task:
    return advance(task, S.CANCELLED, now, next_attempt_time=None)


def requeue(task: Task, now: float) -> Task:
    return advance(task, S.PENDING, now, "requeued", attempts=0, error="")
