"""The Router gRPC service: decode -> router -> encode, nothing else."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator

import grpc

from gateway import convert, metrics
from gateway.errors import abort
from gateway.pb import router_pb2 as pb
from gateway.pb import router_pb2_grpc
from router.errors import InvalidRequest, RouterError
from router.router import Router


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _request_id() -> str:
    return "gen-" + secrets.token_hex(12)


class RouterService(router_pb2_grpc.RouterServicer):
    def __init__(self, router: Router) -> None:
        self.router = router

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateResponse:
        try:
            req = convert.request_from_pb(request)
            if request.dry_run:
                decision = self.router.route(req)
                return pb.GenerateResponse(
                    model=req.model,
                    deployment=decision.deployment,
                    route=convert.decision_to_pb(decision),
                )
            routed = await self.router.generate(req, _deadline(context))
        except RouterError as exc:
            await abort(context, exc)
        return convert.response_to_pb(_request_id(), req.model, routed.deployment, routed.response)

    async def GenerateStream(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateChunk]:
        deltas = 0  # chunks with text sent so far
        upstream_count: int | None = None  # the upstream's own output token count
        alias = ""  # set once the router accepted the request: bounded metric labels
        try:
            req = convert.request_from_pb(request)
            if request.dry_run:
                raise InvalidRequest("dry_run", "not supported on a stream; use Route or Generate")
            stream = self.router.stream(req, _deadline(context))
            alias = req.model
            rid = _request_id()
            first = True
            async with contextlib.aclosing(stream.chunks()) as chunks:
                async for chunk in chunks:
                    msg = convert.chunk_to_pb(rid, chunk)
                    if first:
                        msg.deployment = stream.deployment
                        first = False
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
            routed = await self.router.embed(request.model, list(request.inputs))
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

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(
            models=[convert.model_to_pb(m) for m in self.router.models.values()]
        )

    async def GetModelHealth(
        self, request: pb.GetModelHealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelHealth:
        try:
            models = (
                [self.router.model(request.model)] if request.model else self.router.models.values()
            )
        except RouterError as exc:
            await abort(context, exc)
        return pb.ModelHealth(
            deployments=[convert.health_to_pb(m, d) for m in models for d in m.deployments]
        )

    async def Route(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> pb.RouteDecision:
        try:
            return convert.decision_to_pb(self.router.route(convert.request_from_pb(request)))
        except RouterError as exc:
            await abort(context, exc)
