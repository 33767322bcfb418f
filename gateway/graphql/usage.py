"""Usage aggregates over time buckets, grouped by tenant, app, key, model or
deployment (role developer; a non-admin sees only its own tenant's)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from gateway.graphql.context import GraphContext
from gateway.graphql.convert import Long, time_of, timestamp
from gateway.graphql.errors import bad
from gateway.graphql.rpcs import APP
from gateway.pb import app_pb2 as pb
from gateway.pb import router_pb2


@strawberry.enum
class UsageDimension(Enum):
    TENANT = "tenant"
    APP = "app"
    KEY = "key"
    MODEL = "model"
    DEPLOYMENT = "deployment"


@strawberry.type(description="Token counts and cost of one call or run")
class TokenUsage:
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_input_tokens: int
    cost_usd: float

    @classmethod
    def from_pb(cls, u: router_pb2.Usage) -> TokenUsage:
        return cls(
            input_tokens=u.input_tokens, output_tokens=u.output_tokens,
            total_tokens=u.total_tokens, cached_input_tokens=u.cached_input_tokens,
            cost_usd=u.cost_usd,
        )  # fmt: skip


@strawberry.type(description="One bucket of one group; a dimension not grouped by is null")
class UsageRow:
    bucket_start: datetime | None
    tenant: str | None
    app: str | None
    key: str | None
    model: str | None
    deployment: str | None
    requests: Long
    input_tokens: Long
    output_tokens: Long
    errors: Long
    cost_usd: float

    @classmethod
    def from_pb(cls, r: pb.UsageRow) -> UsageRow:
        g = r.group
        return cls(
            bucket_start=time_of(r, "bucket_start"), tenant=g.get("tenant"), app=g.get("app"),
            key=g.get("key"), model=g.get("model"), deployment=g.get("deployment"),
            requests=Long(r.requests), input_tokens=Long(r.input_tokens),
            output_tokens=Long(r.output_tokens), errors=Long(r.errors), cost_usd=r.cost_usd,
        )  # fmt: skip


@strawberry.type
class UsageQueries:
    @strawberry.field(description="Usage from `start` to `end` (now when null)")
    async def usage(
        self,
        info: Info[GraphContext, None],
        start: datetime,
        end: datetime | None = None,
        group_by: list[UsageDimension] | None = None,
        bucket_seconds: int = 0,
    ) -> list[UsageRow]:
        if bucket_seconds < 0:
            raise bad(f"bucketSeconds: must be >= 0, got {bucket_seconds}")
        request = pb.QueryUsageRequest(
            start_time=timestamp(start), group_by=[d.value for d in group_by or ()],
            bucket_seconds=bucket_seconds,
        )  # fmt: skip
        if end is not None:
            request.end_time.CopyFrom(timestamp(end))
        reply = await info.context.unary(APP["QueryUsage"], request)
        return [UsageRow.from_pb(r) for r in reply.rows]
