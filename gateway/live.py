"""The Router snapshot that new calls get.

One holder per process. Every part that routes (the Router and App services,
the datasets' embedder, task workers) reads `live.router` when a call starts
and keeps that snapshot to its end; a reload (gateway/reload.py) builds the
next snapshot and swaps it in with one assignment.
"""

from __future__ import annotations

from router.request_cache import PromptEmbedder, RequestCache
from router.router import Router


class LiveRouter:
    def __init__(self, router: Router, cache: RequestCache | None) -> None:
        self.router = router
        self.cache = cache  # shared by the snapshots until a reload changes its config
        self.embedder: PromptEmbedder | None = None  # for semantic caching, once there is one
        self.embedder_name = ""

    def use_embedder(self, embedder: PromptEmbedder | None, name: str) -> None:
        """Semantic cache lookups embed with `embedder` (model `name`) from now on."""
        self.embedder, self.embedder_name = embedder, name
        if self.cache is not None:
            self.cache.use_embedder(embedder, name)

    def __call__(self) -> Router:
        """The current snapshot (the holder serves where a `() -> Router` is wanted)."""
        return self.router

    def swap(self, router: Router, cache: RequestCache | None) -> None:
        if cache is not None and cache is not self.cache:
            cache.use_embedder(self.embedder, self.embedder_name)
        self.router = router
        self.cache = cache
