"""Smooth weighted round robin, as nginx does it.

Weights 3:1 give the exact interleaving a a b a (per cycle of 4), not a random
approximation. Picks among the usable members only, so an open breaker's share
goes to the others in the same proportions. Synchronous, no allocation per pick
beyond the returned order.
"""

from __future__ import annotations

from collections.abc import Sequence


class SmoothWeightedRoundRobin:
    def __init__(self, weights: Sequence[int]) -> None:
        if not weights or min(weights) < 1:
            raise ValueError("weights must be a non-empty sequence of positive integers")
        self._weights = list(weights)
        self._current = [0] * len(weights)
        # The fallback order after the pick: heaviest first, config order on ties.
        self._by_weight = sorted(range(len(weights)), key=lambda i: -self._weights[i])

    def pick(self, usable: Sequence[int] | None = None, advance: bool = True) -> int:
        """The next index among `usable` (default: all)."""
        members = range(len(self._weights)) if usable is None else usable
        current, weights = self._current, self._weights
        best, best_score, total = -1, 0, 0
        for i in members:
            score = current[i] + weights[i]
            total += weights[i]
            if best < 0 or score > best_score:
                best, best_score = i, score
        if best < 0:
            raise ValueError("no usable member to pick")
        if advance:
            for i in members:
                current[i] += weights[i]
            current[best] -= total
        return best

    def order(self, usable: Sequence[int] | None = None, advance: bool = True) -> list[int]:
        """`usable` (default: all): the next pick first, the rest by weight."""
        if usable is None:
            usable = range(len(self._weights))
        if not usable:
            return []
        first = self.pick(usable, advance)
        if len(usable) == len(self._weights):
            return [first, *(i for i in self._by_weight if i != first)]
        members = set(usable)
        return [first, *(i for i in self._by_weight if i != first and i in members)]
