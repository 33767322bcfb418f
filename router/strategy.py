"""Routing strategies: each orders an alias's usable deployments for one call.

Pure and synchronous: they read in-process state and never do I/O.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

from router.balance import SmoothWeightedRoundRobin
from router.state import DeploymentState


class Strategy(Protocol):
    name: str

    def order(
        self, usable: Sequence[int], states: Sequence[DeploymentState], stream: bool, advance: bool
    ) -> list[int]:
        """`usable` indexes in the order to try them. With advance=False (dry
        runs, fallbacks) the strategy's own state is left as it was."""
        ...


class CostAware(Protocol):
    """A strategy that orders by each deployment's estimated cost of the call."""

    def order_by_cost(
        self, usable: Sequence[int], states: Sequence[DeploymentState], costs: Sequence[int],
        advance: bool,
    ) -> list[int]: ...  # fmt: skip


class WeightedRoundRobin:
    """Smooth WRR among the usable deployments; the rest follow by weight."""

    name = "weighted_round_robin"

    def __init__(self, weights: Sequence[int]) -> None:
        self._wrr = SmoothWeightedRoundRobin(weights)

    def order(
        self, usable: Sequence[int], states: Sequence[DeploymentState], stream: bool, advance: bool
    ) -> list[int]:
        return self._wrr.order(usable, advance)


class LowestLatency:
    """Fastest first by EWMA: time to first chunk for streams, seconds per
    output token for unary calls. A deployment with no sample yet goes first
    (so every one gets measured); an `exploration` share of picks puts a random
    other one first, so a recovered deployment is tried again."""

    name = "lowest_latency"

    def __init__(self, exploration: float, rng: random.Random) -> None:
        self._exploration = exploration
        self._rng = rng

    def order(
        self, usable: Sequence[int], states: Sequence[DeploymentState], stream: bool, advance: bool
    ) -> list[int]:
        def score(i: int) -> float:
            s = states[i].ewma_ttft_s if stream else states[i].ewma_token_s
            return -1.0 if s is None else s

        ordered = sorted(usable, key=score)
        if advance and len(ordered) > 1 and self._rng.random() < self._exploration:
            ordered.insert(0, ordered.pop(self._rng.randrange(1, len(ordered))))
        return ordered


class LeastInFlight:
    """Fewest calls in flight first; ties rotate so equal load spreads."""

    name = "least_in_flight"

    def __init__(self) -> None:
        self._turn = 0

    def order(
        self, usable: Sequence[int], states: Sequence[DeploymentState], stream: bool, advance: bool
    ) -> list[int]:
        n, turn = len(usable), self._turn
        if advance:
            self._turn += 1
        positions = sorted(range(n), key=lambda p: (states[usable[p]].in_flight, (p - turn) % n))
        return [usable[p] for p in positions]


class LowestCost:
    """Cheapest first by the call's estimated cost (router/pricing.py); equal
    costs go to the one with fewer calls in flight, then rotate. Without
    costs (`order`) every deployment costs the same."""

    name = "lowest_cost"

    def __init__(self) -> None:
        self._turn = 0

    def order(
        self, usable: Sequence[int], states: Sequence[DeploymentState], stream: bool, advance: bool
    ) -> list[int]:
        return self.order_by_cost(usable, states, [0] * (max(usable, default=0) + 1), advance)

    def order_by_cost(
        self, usable: Sequence[int], states: Sequence[DeploymentState], costs: Sequence[int],
        advance: bool,
    ) -> list[int]:  # fmt: skip
        n, turn = len(usable), self._turn
        if advance:
            self._turn += 1

        def key(p: int) -> tuple[int, int, int]:
            i = usable[p]
            return costs[i], states[i].in_flight, (p - turn) % n

        return [usable[p] for p in sorted(range(n), key=key)]


def build(name: str, weights: Sequence[int], exploration: float, rng: random.Random) -> Strategy:
    if name == "weighted_round_robin":
        return WeightedRoundRobin(weights)
    if name == "lowest_latency":
        return LowestLatency(exploration, rng)
    if name == "least_in_flight":
        return LeastInFlight()
    if name == "lowest_cost":
        return LowestCost()
    raise ValueError(f"unknown strategy {name!r}")
