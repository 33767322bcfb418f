"""Routing strategies and the retry backoff: pure functions of state and a seeded rng."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from router.balance import SmoothWeightedRoundRobin
from router.config import BreakerConfig, RetryConfig
from router.state import DeploymentState
from router.strategy import LeastInFlight, LowestLatency, WeightedRoundRobin, build
from router.walk import backoff


def states(n: int) -> list[DeploymentState]:
    return [DeploymentState(BreakerConfig(), lambda: 0.0, 0.5) for _ in range(n)]


def with_latencies(
    ttft: list[float | None], token: list[float | None] | None = None
) -> list[DeploymentState]:
    made = states(len(ttft))
    for state, t, k in zip(made, ttft, token or [None] * len(ttft), strict=True):
        state.ewma_ttft_s, state.ewma_token_s = t, k
    return made


# --- smooth weighted round robin ----------------------------------------------------------


def test_without_the_heavy_member_the_others_alternate_exactly() -> None:
    wrr = SmoothWeightedRoundRobin([5, 1, 1])
    assert [wrr.pick([1, 2]) for _ in range(20)] == [1, 2] * 10


@pytest.mark.parametrize("before", [0, 3, 7])
@pytest.mark.parametrize("without", [1, 2, 5, 10])
def test_a_returning_member_gets_its_exact_share_back(before: int, without: int) -> None:
    wrr = SmoothWeightedRoundRobin([5, 1, 1])
    for _ in range(before):
        wrr.pick()
    for _ in range(without):
        wrr.pick([1, 2])
    cycles = [[wrr.pick([0, 1, 2]) for _ in range(7)] for _ in range(50)]
    for cycle in cycles[1:]:  # the first cycle may still be settling
        assert [cycle.count(i) for i in range(3)] == [5, 1, 1]


def test_a_dry_run_order_leaves_the_rotation_as_it_was() -> None:
    dry, plain = WeightedRoundRobin([5, 1, 1]), WeightedRoundRobin([5, 1, 1])
    every, none = [0, 1, 2], states(3)
    picks, expected = [], []
    for _ in range(21):
        announced = dry.order(every, none, stream=False, advance=False)
        assert dry.order(every, none, stream=False, advance=False) == announced
        picked = dry.order(every, none, stream=False, advance=True)
        assert picked[0] == announced[0]
        picks.append(picked[0])
        expected.append(plain.order(every, none, stream=False, advance=True)[0])
    assert picks == expected


def test_pick_without_advance_announces_the_next_pick() -> None:
    wrr = SmoothWeightedRoundRobin([3, 2, 1])
    for _ in range(12):
        announced = wrr.pick(advance=False)
        assert wrr.pick(advance=False) == announced
        assert wrr.pick() == announced


def test_order_puts_the_pick_first_and_the_rest_by_weight() -> None:
    wrr = SmoothWeightedRoundRobin([1, 5, 3])
    assert wrr.order() == [1, 2, 0]
    assert wrr.order([0, 2]) == [2, 0]


# --- lowest latency -----------------------------------------------------------------------


def test_unmeasured_deployments_go_first() -> None:
    strategy = LowestLatency(0.0, random.Random(1))
    made = with_latencies([0.3, None, 0.1, None])
    assert strategy.order([0, 1, 2, 3], made, stream=True, advance=True) == [1, 3, 2, 0]


def test_streams_rank_by_first_chunk_and_unary_calls_by_token_time() -> None:
    strategy = LowestLatency(0.0, random.Random(1))
    made = with_latencies(ttft=[0.3, 0.1, 0.2], token=[0.01, 0.03, 0.02])
    assert strategy.order([0, 1, 2], made, stream=True, advance=True) == [1, 2, 0]
    assert strategy.order([0, 1, 2], made, stream=False, advance=True) == [0, 2, 1]
    assert strategy.order([0, 2], made, stream=True, advance=True) == [2, 0]


def test_no_exploration_means_always_fastest_first() -> None:
    strategy = LowestLatency(0.0, random.Random(7))
    made = with_latencies([0.4, 0.1, 0.3, 0.2])
    for _ in range(1000):
        assert strategy.order([0, 1, 2, 3], made, stream=True, advance=True) == [1, 3, 2, 0]


def test_exploration_puts_another_first_at_the_configured_share() -> None:
    strategy = LowestLatency(0.2, random.Random(1234))
    made = with_latencies([0.1, 0.2, 0.3, 0.4])
    firsts: Counter[int] = Counter()
    for _ in range(10_000):
        order = strategy.order([0, 1, 2, 3], made, stream=True, advance=True)
        firsts[order[0]] += 1
        assert sorted(order[1:]) == order[1:]  # the rest stay fastest first
    explored = 1 - firsts[0] / 10_000
    assert 0.18 <= explored <= 0.22
    assert all(firsts[i] > 0 for i in (1, 2, 3))


def test_a_dry_run_never_explores() -> None:
    strategy = LowestLatency(1.0, random.Random(3))
    made = with_latencies([0.1, 0.2, 0.3])
    for _ in range(200):
        assert strategy.order([0, 1, 2], made, stream=True, advance=False) == [0, 1, 2]
    assert strategy.order([0, 1, 2], made, stream=True, advance=True)[0] != 0


# --- least in flight ----------------------------------------------------------------------


def test_fewest_in_flight_first() -> None:
    made = states(3)
    for state, n in zip(made, [2, 0, 1], strict=True):
        state.in_flight = n
    assert LeastInFlight().order([0, 1, 2], made, stream=False, advance=True) == [1, 2, 0]


def test_ties_rotate_one_turn_each() -> None:
    strategy, made = LeastInFlight(), states(3)
    for _ in range(4):
        firsts = [strategy.order([0, 1, 2], made, False, advance=True)[0] for _ in range(3)]
        assert sorted(firsts) == [0, 1, 2]


def test_ties_among_the_usable_ones_share_turns_evenly() -> None:
    # Deployment 2's breaker is open: its turn must not fall to the one after it.
    strategy, made = LeastInFlight(), states(3)
    firsts = Counter(strategy.order([0, 1], made, False, advance=True)[0] for _ in range(300))
    assert firsts == {0: 150, 1: 150}


def test_a_dry_run_does_not_take_a_turn() -> None:
    strategy, made = LeastInFlight(), states(3)
    announced = strategy.order([0, 1, 2], made, False, advance=False)
    assert strategy.order([0, 1, 2], made, False, advance=False) == announced
    assert strategy.order([0, 1, 2], made, False, advance=True) == announced


# --- backoff ------------------------------------------------------------------------------


RETRY = RetryConfig(backoff_base_s=0.05, backoff_max_s=2.0)


@pytest.mark.parametrize("round_", range(12))
def test_backoff_stays_under_its_cap(round_: int) -> None:
    rng = random.Random(round_)
    cap = min(RETRY.backoff_max_s, RETRY.backoff_base_s * 2**round_)
    for _ in range(2000):
        assert 0.0 <= backoff(round_, RETRY, rng) < cap


def test_backoff_is_capped_by_the_maximum_for_late_rounds() -> None:
    rng = random.Random(5)
    delays = [backoff(30, RETRY, rng) for _ in range(5000)]
    assert max(delays) < RETRY.backoff_max_s
    assert max(delays) > 0.95 * RETRY.backoff_max_s


@pytest.mark.parametrize("round_", [0, 3, 30])
def test_backoff_mean_is_half_the_cap(round_: int) -> None:
    rng = random.Random(11)
    cap = min(RETRY.backoff_max_s, RETRY.backoff_base_s * 2**round_)
    mean = sum(backoff(round_, RETRY, rng) for _ in range(20_000)) / 20_000
    assert mean == pytest.approx(cap / 2, rel=0.05)


def test_zero_base_means_no_backoff() -> None:
    retry = RetryConfig(backoff_base_s=0.0, backoff_max_s=2.0)
    assert backoff(5, retry, random.Random(0)) == 0.0


# --- issue 14 (mutation testing): gaps the mutants showed -----------------------------------


def test_order_advances_the_rotation_by_default() -> None:
    wrr = SmoothWeightedRoundRobin([1, 1])
    assert [wrr.order(), wrr.order(), wrr.order()] == [[0, 1], [1, 0], [0, 1]]


def test_the_pick_comes_from_the_usable_members_only() -> None:
    assert SmoothWeightedRoundRobin([5, 1]).order([1]) == [1]
    strategy = WeightedRoundRobin([5, 1, 1])
    assert strategy.order([1, 2], states(3), stream=False, advance=True) == [1, 2]
    assert strategy.order([2], states(3), stream=False, advance=True) == [2]


def test_picking_from_no_member_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^no usable member to pick$"):
        SmoothWeightedRoundRobin([1, 2]).pick([])
    assert SmoothWeightedRoundRobin([1, 2]).order([]) == []


@pytest.mark.parametrize("weights", [[], [1, 0], [2, -1]])
def test_weights_must_be_positive(weights: list[int]) -> None:
    with pytest.raises(
        ValueError, match=r"^weights must be a non-empty sequence of positive integers$"
    ):
        SmoothWeightedRoundRobin(weights)


def test_exploration_needs_another_deployment_to_explore() -> None:
    strategy = LowestLatency(1.0, random.Random(0))  # explore on every pick
    assert strategy.order([0], with_latencies([0.1]), stream=True, advance=True) == [0]
    made = with_latencies([0.1, 0.2])
    assert strategy.order([0, 1], made, stream=True, advance=True) == [1, 0]


def test_ties_rotate_from_the_first_in_config_order() -> None:
    strategy, made = LeastInFlight(), states(3)
    orders = [strategy.order([0, 1, 2], made, False, advance=True) for _ in range(4)]
    assert orders == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]


def test_build_makes_each_named_strategy_with_its_settings() -> None:
    assert isinstance(build("weighted_round_robin", [1, 1], 0.0, random.Random()),
                      WeightedRoundRobin)  # fmt: skip
    assert isinstance(build("least_in_flight", [1, 1], 0.0, random.Random()), LeastInFlight)
    explorer = build("lowest_latency", [1, 1], 1.0, random.Random(0))
    assert isinstance(explorer, LowestLatency)
    made = with_latencies([0.1, 0.2])
    assert explorer.order([0, 1], made, stream=True, advance=True) == [1, 0]
    with pytest.raises(ValueError, match=r"^unknown strategy 'fastest'$"):
        build("fastest", [1], 0.0, random.Random())
