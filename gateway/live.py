"""The Router snapshot that new calls get.

One holder per process. Every part that routes (the Router and App services,
the datasets' embedder, task workers) reads `live.router` when a call starts
and keeps that snapshot to its end; a reload (gateway/reload.py) builds the
next snapshot and swaps it in with one assignment.
"""

from __future__ import annotations

from router.cache import ResponseCache
from router.router import Router


class LiveRouter:
    def __init__(self, router: Router, cache: ResponseCache | None) -> None:
        self.router = router
        self.cache = cache  # shared by the snapshots until a reload changes its config

    def __call__(self) -> Router:
        """The current snapshot (the holder serves where a `() -> Router` is wanted)."""
        return self.router

    def swap(self, router: Router, cache: ResponseCache | None) -> None:
        self.router = router
        self.cache = cache
