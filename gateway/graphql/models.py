"""Models: aliases, their deployments, and each deployment's health (breaker
state, latency, error rate). Health is developer-only, as on gRPC."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from gateway.graphql.context import GraphContext
from gateway.graphql.convert import Long, time_of
from gateway.graphql.rpcs import ROUTER
from gateway.pb import router_pb2 as pb


@strawberry.type
class DeploymentHealth:
    model: str
    deployment: str
    provider: str
    healthy: bool
    reason: str
    breaker_state: str = strawberry.field(description='"closed", "open" or "half_open"')
    ewma_ttft_ms: float
    ewma_ms_per_token: float
    error_rate: float
    in_flight: int
    last_error: str
    last_probe_time: datetime | None
    requests: Long
    failures: Long

    @classmethod
    def from_pb(cls, h: pb.DeploymentHealth) -> DeploymentHealth:
        return cls(
            model=h.model, deployment=h.deployment, provider=h.provider, healthy=h.healthy,
            reason=h.reason, breaker_state=h.breaker_state, ewma_ttft_ms=h.ewma_ttft_ms,
            ewma_ms_per_token=h.ewma_ms_per_token, error_rate=h.error_rate,
            in_flight=h.in_flight, last_error=h.last_error,
            last_probe_time=time_of(h, "last_probe_time"), requests=Long(h.requests),
            failures=Long(h.failures),
        )  # fmt: skip


def health_loader(ctx: GraphContext) -> DataLoader[str, list[DeploymentHealth]]:
    """Every alias's health from one GetModelHealth call, however many models
    a query names."""

    async def load(aliases: list[str]) -> list[list[DeploymentHealth]]:
        model = aliases[0] if len(aliases) == 1 else ""
        reply = await ctx.unary(ROUTER["GetModelHealth"], pb.GetModelHealthRequest(model=model))
        by_alias: dict[str, list[DeploymentHealth]] = defaultdict(list)
        for item in reply.deployments:
            by_alias[item.model].append(DeploymentHealth.from_pb(item))
        return [by_alias.get(alias, []) for alias in aliases]

    return DataLoader(load_fn=load)


@strawberry.type
class Deployment:
    model: strawberry.Private[str]
    name: str
    provider: str
    upstream_model: str
    weight: int

    @strawberry.field
    async def health(self, info: Info[GraphContext, None]) -> DeploymentHealth | None:
        every = await info.context.loader("health", health_loader).load(self.model)
        return next((h for h in every if h.deployment == self.name), None)


@strawberry.type
class Model:
    alias: str
    strategy: str
    fallbacks: list[str]
    deployments: list[Deployment]

    @strawberry.field(description="Each deployment's health (role developer)")
    async def health(self, info: Info[GraphContext, None]) -> list[DeploymentHealth]:
        loaded: list[DeploymentHealth] = await info.context.loader("health", health_loader).load(
            self.alias
        )
        return loaded

    @classmethod
    def from_pb(cls, m: pb.Model) -> Model:
        deployments = [
            Deployment(model=m.alias, name=d.name, provider=d.provider,
                       upstream_model=d.upstream_model, weight=d.weight)
            for d in m.deployments
        ]  # fmt: skip
        return cls(
            alias=m.alias, strategy=m.strategy, fallbacks=list(m.fallbacks),
            deployments=deployments,
        )  # fmt: skip


def models_loader(ctx: GraphContext) -> DataLoader[str, Model | None]:
    """Models by alias from one ListModels call."""

    async def load(aliases: list[str]) -> list[Model | None]:
        reply = await ctx.unary(ROUTER["ListModels"], pb.ListModelsRequest())
        by_alias = {m.alias: Model.from_pb(m) for m in reply.models}
        return [by_alias.get(alias) for alias in aliases]

    return DataLoader(load_fn=load)


@strawberry.type
class ModelQueries:
    @strawberry.field(description="The model aliases this gateway routes")
    async def models(self, info: Info[GraphContext, None]) -> list[Model]:
        reply: Any = await info.context.unary(ROUTER["ListModels"], pb.ListModelsRequest())
        return [Model.from_pb(m) for m in reply.models]

    @strawberry.field(description="One alias; null when there is none by that name")
    async def model(self, info: Info[GraphContext, None], alias: str) -> Model | None:
        found: Model | None = await info.context.loader("models", models_loader).load(alias)
        return found
