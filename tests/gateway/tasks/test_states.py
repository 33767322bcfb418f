"""The task state machine and the retry policy: synchronous, on given times."""

from __future__ import annotations

import random

import pytest

from gateway.tasks import states
from gateway.tasks.errors import IllegalTransition
from gateway.tasks.model import Task, TaskState
from gateway.tasks.states import ALLOWED, RetryPolicy

S = TaskState
POLICY = RetryPolicy(max_attempts=3, base_s=2.0, max_s=5.0, jitter=0.5)


def pending(now: float = 100.0) -> Task:
    return states.new_task("t1", "noop", {"a": 1}, "", now)


def test_a_new_task_is_pending_with_one_timestamped_transition() -> None:
    task = pending(100.0)
    assert task.state is S.PENDING and task.attempts == 0
    assert [(t.state, t.time) for t in task.transitions] == [(S.PENDING, 100.0)]
    assert task.create_time == task.update_time == 100.0


def test_the_happy_path_is_stamped_at_each_step() -> None:
    task = states.start(pending(100.0), 101.0)
    assert (task.state, task.attempts) == (S.PROCESSING, 1)
    task = states.succeed(task, {"ok": True}, 103.5)
    assert task.state is S.SUCCESS and task.result == {"ok": True}
    assert [(t.state, t.time) for t in task.transitions] == [
        (S.PENDING, 100.0),
        (S.PROCESSING, 101.0),
        (S.SUCCESS, 103.5),
    ]
    assert task.update_time == 103.5


@pytest.mark.parametrize("final", [S.SUCCESS, S.FAILURE, S.CANCELLED])
def test_final_states_allow_nothing(final: TaskState) -> None:
    assert ALLOWED[final] == frozenset()


@pytest.mark.parametrize(
    ("make", "action"),
    [
        (lambda: pending(), lambda t: states.succeed(t, {}, 1.0)),
        (lambda: pending(), lambda t: states.requeue(t, 1.0)),
        (lambda: states.start(pending(), 1.0), lambda t: states.cancel(t, 2.0)),
        (lambda: states.cancel(pending(), 1.0), lambda t: states.start(t, 2.0)),
        (lambda: states.succeed(states.start(pending(), 1.0), {}, 2.0), lambda t: states.due(t, 3)),
    ],
)
def test_illegal_transitions_are_refused(make, action) -> None:  # type: ignore[no-untyped-def]
    task = make()
    with pytest.raises(IllegalTransition, match=f"is {task.state.name}: cannot become"):
        action(task)


def test_failures_retry_with_backoff_then_dead_letter() -> None:
    rng = random.Random(7)
    task = states.start(pending(0.0), 0.0)
    task = states.fail(task, "boom", 10.0, POLICY, rng)
    assert task.state is S.RETRYING and task.error == "boom"
    assert task.next_attempt_time is not None and 11.0 <= task.next_attempt_time <= 12.0
    task = states.start(states.due(task, 12.0), 12.0)
    task = states.fail(task, "boom", 20.0, POLICY, rng)
    assert task.next_attempt_time is not None and 22.0 <= task.next_attempt_time <= 24.0
    task = states.start(states.due(task, 24.0), 24.0)
    task = states.fail(task, "boom again", 30.0, POLICY, rng)
    assert (task.state, task.attempts, task.error) == (S.DEAD_LETTERED, 3, "boom again")
    task = states.requeue(task, 40.0)
    assert (task.state, task.attempts, task.error) == (S.PENDING, 0, "")


def test_a_permanent_failure_does_not_retry() -> None:
    task = states.fail(
        states.start(pending(), 1.0), "bad input", 2.0, POLICY, random.Random(), False
    )
    assert task.state is S.FAILURE


def test_backoff_doubles_up_to_the_cap_and_jitter_only_shortens() -> None:
    assert [POLICY.nominal_delay(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 5.0, 5.0]
    rng = random.Random(1)
    delays = [POLICY.delay(2, rng) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert max(delays) - min(delays) > 1.0  # jitter spreads the retries
    assert RetryPolicy(base_s=1, jitter=0).delay(3, rng) == 4.0


def test_reclaim_runs_again_or_dead_letters_a_task_that_kills_its_workers() -> None:
    task = states.start(pending(), 1.0)
    again = states.reclaim(task, 5.0, POLICY)
    assert (again.state, again.attempts) == (S.PROCESSING, 2)
    assert [t.reason for t in again.transitions][-2:] == ["worker lost", ""]
    spent = states.start(states.release(task, 2.0), 3.0)
    assert spent.attempts == 1  # a released attempt does not count
    for _ in range(2):
        spent = states.reclaim(spent, 4.0, POLICY)
    assert spent.attempts == 3
    assert states.reclaim(spent, 5.0, POLICY).state is S.DEAD_LETTERED


def test_json_round_trip_is_exact() -> None:
    task = states.succeed(states.start(pending(1.5), 2.25), {"out": ["é", 1, None]}, 3.0)
    assert Task.from_json(task.to_json()) == task
    assert Task.from_json(task.to_json(with_result=False)).result is None
    with pytest.raises(ValueError, match="not a task record"):
        Task.from_json(b'{"id": 1}')


def test_ids_sort_by_creation_time() -> None:
    ids = [states.new_task("t", "noop", {}, "", now).id for now in (1.0, 2.0, 1000.0, 1e9)]
    assert ids == sorted(ids)
