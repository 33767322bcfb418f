"""Hosted rerank APIs in Cohere's shape (Cohere, Jina, and servers that copy
them), as the `cohere` provider. Rerank only: generate, stream and embed
answer UNIMPLEMENTED.

One call is `POST {base_url}{path}` with a JSON body

    {"model", "query", "documents": [text, ...], "top_n", "return_documents": false}

and an answer `{"results": [{"index", "relevance_score"}, ...]}` plus, where
the vendor reports it, `meta.billed_units.search_units` (Cohere) or
`usage.total_tokens` (Jina). Documents never travel back: the gateway has
them. `probe()` sends nothing, since these APIs have no free call: the
breaker judges a deployment by its real calls.

Deployment options:

    api_key_env: COHERE_API_KEY        # the environment variable holding the key
    base_url: https://api.cohere.com   # e.g. https://api.jina.ai for Jina
    path: /v1/rerank                   # /v2/rerank, /rerank, ...
    params: {max_chunks_per_doc: 10}   # extra body fields; the request's own win
    timeout_s: 60                      # per call, cut to the caller's deadline
    max_connections: 64
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import httpx2
from pydantic import Field

from adapters import _http
from adapters._options import parse_options
from router import spans
from router.config import Frozen
from router.errors import ErrorKind, ProviderError
from router.provider import Provider
from router.types import Chunk, Embeddings, Ranked, Ranking, Request, Response, Usage

VENDOR = "cohere"
DEFAULT_BASE_URL = "https://api.cohere.com"


class RerankHttpSettings(Frozen):
    api_key_env: str = Field(default="COHERE_API_KEY", min_length=1)
    base_url: str = Field(default=DEFAULT_BASE_URL, min_length=1)
    path: str = Field(default="/v1/rerank", pattern=r"^/")
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(default=60.0, gt=0)
    max_connections: int = Field(default=64, ge=1)


class RerankHttpProvider(Provider):
    """One reranker model behind a Cohere-compatible HTTP API."""

    def __init__(self, model: str, options: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.settings = settings = parse_options(RerankHttpSettings, options, VENDOR)
        key = _http.api_key(settings.api_key_env)
        if key is None and settings.base_url == DEFAULT_BASE_URL:
            raise ValueError(f"{VENDOR}: set the environment variable {settings.api_key_env}")
        self.url = settings.base_url.rstrip("/") + settings.path
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        if key is not None:
            self._headers["authorization"] = f"Bearer {key}"
        self._span = _http.span_attributes(self.url)
        connections = settings.max_connections
        self._client = httpx2.AsyncClient(
            limits=httpx2.Limits(
                max_connections=connections, max_keepalive_connections=connections
            ),
            timeout=settings.timeout_s,
        )

    def body(self, query: str, documents: Sequence[str], top_n: int) -> dict[str, Any]:
        """The JSON body `rerank` sends. No I/O."""
        request = {
            "model": self.model,
            "query": query,
            "documents": list(documents),
            "top_n": top_n or len(documents),
            "return_documents": False,
        }
        return _http.merged(self.settings.params, request)

    async def rerank(
        self, query: str, documents: Sequence[str], top_n: int, deadline: float | None
    ) -> Ranking:
        """One POST within `timeout_s` and the deadline; cancelling closes the
        request. Idempotent on the upstream's side (billed, though)."""
        left = _http.remaining(deadline, VENDOR)
        timeout = self.settings.timeout_s if left is None else min(left, self.settings.timeout_s)
        data = json.dumps(self.body(query, documents, top_n), separators=(",", ":"))
        headers = dict(self._headers)
        try:
            with spans.upstream(self._span, headers) as span:
                answer = await self._client.post(
                    self.url, content=data.encode(), headers=headers, timeout=timeout
                )
                span.set_attribute(_http.STATUS, answer.status_code)
        except httpx2.HTTPError as exc:
            raise _http.transport_error(exc, VENDOR, started=False) from exc
        if answer.status_code >= 300:
            message = _http.error_message(answer.content)
            raise _http.status_error(VENDOR, answer.status_code, answer.headers, message)
        return _ranking(answer.content, len(documents), top_n)

    async def generate(self, request: Request, deadline: float | None) -> Response:
        raise self._rerank_only()

    async def stream(self, request: Request, deadline: float | None) -> AsyncGenerator[Chunk, None]:
        raise self._rerank_only()
        yield Chunk()  # pragma: no cover - makes this an async generator

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        raise self._rerank_only()

    async def probe(self) -> None:
        return None  # no free call to make (module docstring)

    def upstream_request(self, request: Request) -> dict[str, Any]:
        return {"model": self.model, "url": self.url, "refused": "rerank-only: use Rerank"}

    def upstream_body(self, request: Request) -> bytes:
        return b""  # generate sends nothing

    async def aclose(self) -> None:
        await self._client.aclose()

    def _rerank_only(self) -> ProviderError:
        return ProviderError(
            ErrorKind.UNIMPLEMENTED, f"{VENDOR} deployment {self.model!r} is rerank-only"
        )


def _ranking(content: bytes, count: int, top_n: int) -> Ranking:
    """The answer's results, checked (an index past the documents, or a
    malformed body, is the upstream's fault), best first."""
    try:
        answer = json.loads(content)
        results = [Ranked(int(r["index"]), float(r["relevance_score"])) for r in answer["results"]]
    except (ValueError, TypeError, KeyError) as exc:
        raise ProviderError(ErrorKind.UPSTREAM_5XX, f"{VENDOR}: malformed answer: {exc}") from exc
    if any(not 0 <= r.index < count for r in results):
        raise ProviderError(ErrorKind.UPSTREAM_5XX, f"{VENDOR}: a result's index is out of range")
    results.sort(key=lambda r: -r.score)
    return Ranking(results[: top_n or None], *_usage(answer))


def _usage(answer: Mapping[str, Any]) -> tuple[Usage, int]:
    """(tokens, search units) as far as the vendor reports them."""
    usage, meta = answer.get("usage"), answer.get("meta")
    tokens = usage.get("total_tokens", 0) if isinstance(usage, dict) else 0
    billed = meta.get("billed_units") if isinstance(meta, dict) else None
    units = billed.get("search_units", 0) if isinstance(billed, dict) else 0
    return Usage(int(tokens or 0)), int(units or 0)
