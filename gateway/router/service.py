"""The Router gRPC service: decode -> router -> encode, nothing else.

Metadata read: `x-request-id` (else one is made; it names the request in
ROUTING_DEBUG lines and in the response id), `x-infergate-deployment`
(manual override, as the request's `deployment` field) and
`x-infergate-cache: semantic` (as `semantic_cache`). Metadata written on
answers from the cache: `x-infergate-cache: hit`, `x-infergate-cache-kind`
(exact or semantic), `x-infergate-cache-similarity` and
`x-infergate-cache-source` (the id of the request whose answer it is).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

import grpc

from gateway import metrics
from gateway.live import LiveRouter
from gateway.pb import router_pb2 as pb
from gateway.pb import router_pb2_grpc
from gateway.router import wire
from gateway.rpc import deadline
from gateway.status import abort
from router.errors import InvalidRequest, RouterError
from router.request_cache import CacheHit
from router.types import STARTED, Request


def _decode(message: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> Request:
    request_id = override = ""
    semantic = False
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            request_id = str(value)
        elif key == "x-infergate-deployment":
            override = str(value)
        elif key == "x-infergate-cache":
            semantic = value == "semantic"
    request_id = request_id or "gen-" + secrets.token_hex(12)
    return wire.request_from_pb(message, request_id, override, semantic)


def _hit_metadata(hit: CacheHit) -> tuple[tuple[str, str], ...]:
    return (
        ("x-infergate-cache", "hit"),
        ("x-infergate-cache-kind", hit.kind),
        ("x-infergate-cache-similarity", f"{hit.similarity:.4f}"),
        ("x-infergate-cache-source", hit.request_id),
    )


def _hit_pb(hit: CacheHit) -> pb.CacheHit:
    return pb.CacheHit(kind=hit.kind, similarity=hit.similarity, request_id=hit.request_id)


class RouterService(router_pb2_grpc.RouterServicer):
    """Serves the live snapshot; a hot reload swaps it, and calls already
    running finish on the one they started with."""

    def __init__(self, live: LiveRouter) -> None:
        self._live = live

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateResponse:
        router = self._live.router
        try:
            req = _decode(request, context)
            if request.dry_run:
                decision = router.route(req)
                return pb.GenerateResponse(
                    id=req.request_id,
                    model=req.model,
                    deployment=decision.deployment,
                    route=wire.decision_to_pb(decision),
                )
            routed = await router.generate(req, deadline(context))
        except RouterError as exc:
            await abort(context, exc)
        reply = wire.response_to_pb(req.request_id, req.model, routed.deployment, routed.response)
        if routed.hit is not None:
            await context.send_initial_metadata(_hit_metadata(routed.hit))
            reply.cached = True
            reply.cache_hit.CopyFrom(_hit_pb(routed.hit))
        return reply

    async def GenerateStream(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateChunk]:
        deltas = 0  # chunks with text sent so far
        upstream_count: int | None = None  # the upstream's own output token count
        alias = ""  # set once the router accepted the request: bounded metric labels
        try:
            req = _decode(request, context)
            if request.dry_run:
                raise InvalidRequest("dry_run", "not supported on a stream; use Route or Generate")
            stream = self._live.router.stream(req, deadline(context))
            alias = req.model
            first = True
            async with contextlib.aclosing(stream.chunks(announce=True)) as chunks:
                async for chunk in chunks:
                    if chunk is STARTED:  # the upstream answered: our headers can go now
                        await context.send_initial_metadata(())
                        continue
                    msg = wire.chunk_to_pb(req.request_id, chunk)
                    if first:
                        first = False
                        msg.deployment = stream.deployment
                        if stream.hit is not None:
                            msg.cached = True
                            msg.cache_hit.CopyFrom(_hit_pb(stream.hit))
                            await context.send_initial_metadata(_hit_metadata(stream.hit))
                    if chunk.delta:
                        deltas += 1
                    if chunk.usage is not None:
                        upstream_count = chunk.usage.output_tokens
                    yield msg
        except RouterError as exc:
            await abort(context, exc)
        finally:
            count = deltas if upstream_count is None else upstream_count
            if alias and count:
                metrics.TOKENS_STREAMED.labels(alias).inc(count)

    async def Embed(
        self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedResponse:
        try:
            routed = await self._live.router.embed(
                request.model, list(request.inputs), deadline(context)
            )
        except RouterError as exc:
            await abort(context, exc)
        result = routed.embeddings
        return pb.EmbedResponse(
            model=request.model,
            deployment=routed.deployment,
            embeddings=[pb.Embedding(values=v) for v in result.vectors],
            usage=pb.Usage(
                input_tokens=result.usage.input_tokens, total_tokens=result.usage.total_tokens
            ),
        )

    async def Rerank(
        self, request: pb.RerankRequest, context: grpc.aio.ServicerContext
    ) -> pb.RerankResponse:
        try:
            routed = await self._live.router.rerank(
                request.model,
                request.query,
                list(request.documents),
                request.top_n,
                deadline(context),
            )
        except RouterError as exc:
            await abort(context, exc)
        texts = request.documents if request.return_documents else None
        return wire.ranking_to_pb(request.model, routed.deployment, routed.ranking, texts)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(
            models=[wire.model_to_pb(m) for m in self._live.router.models.values()]
        )

    async def GetModelHealth(
        self, request: pb.GetModelHealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelHealth:
        router = self._live.router
        try:
            models = [router.model(request.model)] if request.model else router.models.values()
        except RouterError as exc:
            await abort(context, exc)
        return pb.ModelHealth(
            deployments=[wire.health_to_pb(m, d) for m in models for d in m.deployments]
        )

    async def Route(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> pb.RouteDecision:
        try:
            return wire.decision_to_pb(self._live.router.route(_decode(request, context)))
        except RouterError as exc:
            await abort(context, exc)
