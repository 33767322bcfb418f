"""Local embeddings with ONNX Runtime (indexer.onnx_embedder), as a Provider.

Embedding-only: generate and stream fail with BAD_REQUEST. `probe()` embeds
one short text. The model loads when the deployment is built, so a missing
model directory is a config error naming it (run `infergate model fetch`).

Deployment options:

    model_dir: data/models/all-MiniLM-L6-v2   # required: a converted model directory
    threads: 2                  # ONNX Runtime intra-op threads (default: every core)
    max_batch_tokens: 8192      # padded tokens per model call
    max_wait_s: 0.002           # how long a first input waits for company
    max_padding: 0.1            # most of a batch that may be padding
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.trace import SpanKind
from pydantic import Field

from adapters._options import parse_options
from indexer.batching import BatcherClosed
from indexer.errors import NotReady
from indexer.onnx_embedder import OnnxEmbedder
from router import spans
from router.config import Frozen
from router.errors import ErrorKind, ProviderError
from router.types import Chunk, Embeddings, Request, Response, Usage

VENDOR = "onnx"


class OnnxSettings(Frozen):
    model_dir: Path
    threads: int | None = Field(default=None, ge=1, le=256)
    max_batch_tokens: int = Field(default=8192, ge=1)
    max_wait_s: float = Field(default=0.002, ge=0, le=1)
    max_padding: float = Field(default=0.1, ge=0, le=1)


class OnnxProvider:
    """One local embedding model; concurrent embed() calls share model calls."""

    def __init__(self, model: str, options: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.settings = parse_options(OnnxSettings, options, VENDOR)
        try:
            self.embedder = OnnxEmbedder(
                self.settings.model_dir,
                threads=self.settings.threads,
                max_batch_tokens=self.settings.max_batch_tokens,
                max_wait_s=self.settings.max_wait_s,
                max_padding=self.settings.max_padding,
            )
        except NotReady as exc:
            raise ValueError(f"{VENDOR}: options.model_dir: {exc}") from None

    async def generate(self, request: Request, deadline: float | None) -> Response:
        raise self._embedding_only()

    async def stream(self, request: Request, deadline: float | None) -> AsyncGenerator[Chunk, None]:
        raise self._embedding_only()
        yield Chunk()  # pragma: no cover - makes this an async generator

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """Idempotent; cancelling drops the texts not yet computed. No deadline of
        its own: the router's attempt timeout cancels it."""
        try:
            if not spans.ON:
                vectors, tokens = await self.embedder.embed_counted(texts)
            else:  # in-process: no one to propagate the trace to
                attributes = {"infergate.texts": len(texts)}
                with spans.upstream(attributes, kind=SpanKind.INTERNAL) as span:
                    vectors, tokens = await self.embedder.embed_counted(texts)
                    span.set_attribute("infergate.tokens", tokens)
        except BatcherClosed as exc:
            raise ProviderError(ErrorKind.UNAVAILABLE, f"{VENDOR}: {exc}") from exc
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ProviderError(
                ErrorKind.UPSTREAM_5XX, f"{VENDOR}: inference failed: {exc}"
            ) from exc
        return Embeddings(vectors.tolist(), Usage(input_tokens=tokens))

    async def probe(self) -> None:
        await self.embed(["probe"])

    def upstream_body(self, request: Request) -> bytes:
        return b""  # a local model: nothing is sent

    def upstream_request(self, request: Request) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_dir": str(self.settings.model_dir),
            "refused": "embedding-only: generate and stream are not served",
        }

    async def aclose(self) -> None:
        await self.embedder.aclose()

    def _embedding_only(self) -> ProviderError:
        return ProviderError(
            ErrorKind.BAD_REQUEST,
            f"{VENDOR} deployment {self.model!r} is embedding-only: use Embed",
        )
