"""Smooth weighted round robin, as nginx does it.

Weights 3:1 give the exact interleaving a a b a (per cycle of 4), not a random
approximation. Synchronous and allocation-free per pick.
"""

from __future__ import annotations

from collections.abc import Sequence


class SmoothWeightedRoundRobin:
    def __init__(self, weights: Sequence[int]) -> None:
        if not weights or min(weights) < 1:
            raise ValueError("weights must be a non-empty sequence of positive integers")
        self._weights = list(weights)
        self._total = sum(weights)
        self._current = [0] * len(weights)

    def pick(self) -> int:
        """The next index, advancing the state."""
        current = self._current
        best = 0
        for i, weight in enumerate(self._weights):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return best

    def order(self, advance: bool = True) -> list[int]:
        """All indexes: the next pick first, the rest by weight (then config order).
        With advance=False the state is left as it was (dry runs, fallbacks)."""
        first = self.pick() if advance else self.peek()
        rest = sorted(
            (i for i in range(len(self._weights)) if i != first), key=lambda i: -self._weights[i]
        )
        return [first, *rest]

    def peek(self) -> int:
        """What `pick` would return, without advancing."""
        scores = [c + w for c, w in zip(self._current, self._weights, strict=True)]
        return scores.index(max(scores))
