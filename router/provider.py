"""The interface every backend in adapters/ implements.

Adapters subclass `Provider` explicitly, so that a capability most backends
lack (rerank) has one default here, not a copy in each adapter."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any, Protocol

from router.errors import ErrorKind, ProviderError
from router.types import Chunk, Embeddings, Ranking, Request, Response


class Provider(Protocol):
    """One deployment's upstream.

    Deadlines are absolute `time.monotonic()` values (None: no deadline); a
    provider raises `ProviderError(TIMEOUT)` when one passes. Every method raises
    only `ProviderError` for upstream failures. Cancelling the calling task (or
    closing a stream's iterator) stops the upstream work and releases its
    connection. None of the methods is idempotent on the upstream's side: the
    router decides what may be retried.
    """

    async def generate(self, request: Request, deadline: float | None) -> Response: ...

    def stream(self, request: Request, deadline: float | None) -> AsyncGenerator[Chunk, None]:
        """Chunks in upstream order; the last one carries finish reason and usage."""
        ...

    async def embed(self, texts: Sequence[str]) -> Embeddings: ...

    async def rerank(
        self, query: str, documents: Sequence[str], top_n: int, deadline: float | None
    ) -> Ranking:
        """The `top_n` documents (0: all) most relevant to `query`, best first,
        each with its index in `documents` and its score. Idempotent. The
        default (a backend with no reranker) raises ProviderError(UNIMPLEMENTED),
        which the router answers by trying the alias's other deployments."""
        raise ProviderError(
            ErrorKind.UNIMPLEMENTED, f"{type(self).__name__} has no rerank: use a reranker model"
        )

    async def probe(self) -> None:
        """A cheap health call; raises ProviderError when the upstream is unhealthy."""
        ...

    def upstream_request(self, request: Request) -> dict[str, Any]:
        """The body `generate` would send, as data, for dry runs. No I/O."""
        ...

    def upstream_body(self, request: Request) -> bytes:
        """Its exact bytes on the wire; b"" where the upstream takes no JSON
        text (a gRPC backend, a local model). No I/O."""
        ...

    async def aclose(self) -> None: ...
