"""Metadata filters (all conditions must hold) and the in-memory postings that
answer them without touching SQLite.

Values compare by kind: numbers (int or float alike), strings and booleans
never equal one another. A list value matches when any element does (tags).
Nested objects are reachable as dotted fields ("author.name").
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer.errors import InvalidInput

Key = tuple[str, Any]
Labels = npt.NDArray[np.int64]
_NONE: Labels = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Eq:
    field: str
    value: Any


@dataclass(frozen=True, slots=True)
class In:
    field: str
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Range:
    field: str
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None


Condition = Eq | In | Range


def key(value: Any, field: str = "filter") -> Key:
    """A value's hashable, kind-tagged form."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidInput(field, f"{value} is not a finite number")
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    raise InvalidInput(field, f"cannot compare with a {type(value).__name__}")


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in values.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{name}.")
        elif isinstance(value, list | tuple):
            for item in value:
                if item is not None and not isinstance(item, Mapping | list | tuple):
                    yield f"{prefix}{name}", item
        elif value is not None:
            yield f"{prefix}{name}", value


class MetadataIndex:
    """Postings (field, value) -> labels, and per-field numeric columns for
    ranges. Not thread-safe on its own: the collection's index lock guards it.
    Sorted label arrays are built on first use and dropped on any change."""

    def __init__(self) -> None:
        self._postings: dict[str, dict[Key, set[int]]] = defaultdict(lambda: defaultdict(set))
        self._numbers: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        self._facts: dict[int, list[tuple[str, Key]]] = {}
        self._arrays: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self._facts)

    def add(self, label: int, facts: Mapping[str, Any]) -> None:
        pairs = [(name, key(value, name)) for name, value in _flatten(facts)]
        self._facts[label] = pairs
        for name, k in pairs:
            self._postings[name][k].add(label)
            if k[0] == "n":
                self._numbers[name][label].append(k[1])
        self._arrays.clear()

    def remove(self, label: int) -> None:
        for name, k in self._facts.pop(label, ()):
            postings = self._postings[name]
            postings[k].discard(label)
            if not postings[k]:
                del postings[k]
            self._numbers[name].pop(label, None)
        self._arrays.clear()

    def labels(self) -> Labels:
        return self._cached("*", lambda: self._facts.keys())

    def matching(self, conditions: Sequence[Condition]) -> Labels | None:
        """Sorted labels meeting every condition; None for no conditions (all match)."""
        result: Labels | None = None
        for condition in conditions:
            labels = self._cached_match(condition)
            result = labels if result is None else np.intersect1d(result, labels, True)
            if not len(result):
                return _NONE
        return result

    def _cached_match(self, condition: Condition) -> Labels:
        """Repeated filters (the common case: a UI's facets) cost a dict lookup.
        Keyed by kind-tagged values, so that 1 and True stay different filters."""
        if isinstance(condition, Eq):
            cache_key: Any = ("eq", condition.field, key(condition.value, condition.field))
        elif isinstance(condition, In):
            keys = tuple(key(v, condition.field) for v in condition.values)
            cache_key = ("in", condition.field, keys)
        else:
            cache_key = ("range", condition)
        if cache_key not in self._arrays:
            self._arrays[cache_key] = self._match(condition)
        labels: Labels = self._arrays[cache_key]
        return labels

    def _match(self, condition: Condition) -> Labels:
        postings = self._postings.get(condition.field, {})
        if isinstance(condition, Eq):
            k = key(condition.value, condition.field)
            return self._cached(("eq", condition.field, k), lambda: postings.get(k, ()))
        if isinstance(condition, In):
            keys = [key(v, condition.field) for v in condition.values]
            parts = [
                self._cached(("eq", condition.field, k), lambda k=k: postings.get(k, ()))
                for k in keys
            ]
            return np.unique(np.concatenate(parts)) if parts else _NONE
        return self._range(condition)

    def _range(self, condition: Range) -> Labels:
        values, labels = self._column(condition.field)
        low, high = 0, len(values)
        if condition.gte is not None:
            low = max(low, int(np.searchsorted(values, condition.gte, "left")))
        if condition.gt is not None:
            low = max(low, int(np.searchsorted(values, condition.gt, "right")))
        if condition.lte is not None:
            high = min(high, int(np.searchsorted(values, condition.lte, "right")))
        if condition.lt is not None:
            high = min(high, int(np.searchsorted(values, condition.lt, "left")))
        if low >= high:
            return _NONE
        return np.unique(labels[low:high])

    def _column(self, name: str) -> tuple[npt.NDArray[np.float64], Labels]:
        cache_key = ("column", name)
        if cache_key not in self._arrays:
            pairs = [(v, label) for label, vs in self._numbers.get(name, {}).items() for v in vs]
            values = np.array([p[0] for p in pairs], dtype=np.float64)
            labels = np.array([p[1] for p in pairs], dtype=np.int64)
            order = np.argsort(values, kind="stable")
            self._arrays[cache_key] = (values[order], labels[order])
        column: tuple[npt.NDArray[np.float64], Labels] = self._arrays[cache_key]
        return column

    def _cached(self, cache_key: Any, labels: Any) -> Labels:
        if cache_key not in self._arrays:
            array = np.fromiter(labels(), dtype=np.int64)
            array.sort()
            self._arrays[cache_key] = array
        cached: Labels = self._arrays[cache_key]
        return cached
