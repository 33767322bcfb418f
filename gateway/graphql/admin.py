"""Who the caller is; tenants, keys and the audit log (role admin, as on gRPC)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.graphql.context import GraphContext
from gateway.graphql.convert import Long, json_of, time_of
from gateway.graphql.pagination import DEFAULT_FIRST, Connection, Page
from gateway.graphql.rpcs import APP
from gateway.pb import app_pb2 as pb


@strawberry.type
class Caller:
    tenant: str
    role: str
    key: str


@strawberry.type
class Tenant:
    name: str
    display_name: str
    requests_per_minute: int
    tokens_per_minute: int
    create_time: datetime | None

    @classmethod
    def from_pb(cls, t: pb.Tenant) -> Tenant:
        return cls(
            name=t.name, display_name=t.display_name, requests_per_minute=t.requests_per_minute,
            tokens_per_minute=t.tokens_per_minute, create_time=time_of(t, "create_time"),
        )  # fmt: skip


@strawberry.type(description="A key as listed: never its secret")
class ApiKey:
    name: str
    role: str
    prefix: str
    requests_per_minute: int
    tokens_per_minute: int
    create_time: datetime | None
    revoke_time: datetime | None

    @classmethod
    def from_pb(cls, k: pb.ApiKey) -> ApiKey:
        return cls(
            name=k.name, role=k.role, prefix=k.prefix, requests_per_minute=k.requests_per_minute,
            tokens_per_minute=k.tokens_per_minute, create_time=time_of(k, "create_time"),
            revoke_time=time_of(k, "revoke_time"),
        )  # fmt: skip


@strawberry.type
class AuditEvent:
    sequence: Long
    time: datetime | None
    actor: str
    action: str
    resource: str
    before: JSON | None
    after: JSON | None
    prev_hash: str
    hash: str

    @classmethod
    def from_pb(cls, e: pb.AuditEvent) -> AuditEvent:
        return cls(
            sequence=Long(e.sequence), time=time_of(e, "time"), actor=e.actor, action=e.action,
            resource=e.resource, before=json_of(e, "before"), after=json_of(e, "after"),
            prev_hash=e.prev_hash, hash=e.hash,
        )  # fmt: skip


@strawberry.type
class AdminQueries:
    @strawberry.field(description="The calling key: its tenant and role")
    async def caller(self, info: Info[GraphContext, None]) -> Caller:
        reply = await info.context.unary(APP["GetCaller"], pb.GetCallerRequest())
        return Caller(tenant=reply.tenant, role=reply.role, key=reply.key)

    @strawberry.field(description="Role admin")
    async def tenants(
        self, info: Info[GraphContext, None], first: int = DEFAULT_FIRST, after: str | None = None
    ) -> Connection[Tenant]:
        page = Page.of(first, after)
        request = pb.ListTenantsRequest(page_size=page.size, page_token=page.token)
        reply = await info.context.unary(APP["ListTenants"], request)
        return page.connection(reply.tenants, reply.next_page_token, Tenant.from_pb)

    @strawberry.field(description='A tenant\'s keys ("tenants/{id}"; role admin)')
    async def api_keys(self, info: Info[GraphContext, None], tenant: str) -> list[ApiKey]:
        reply = await info.context.unary(APP["ListApiKeys"], pb.ListApiKeysRequest(tenant=tenant))
        return [ApiKey.from_pb(k) for k in reply.keys]

    @strawberry.field(description="Oldest first; only `resource`'s when given (role admin)")
    async def audit_events(
        self,
        info: Info[GraphContext, None],
        resource: str = "",
        first: int = DEFAULT_FIRST,
        after: str | None = None,
    ) -> Connection[AuditEvent]:
        page = Page.of(first, after)
        request = pb.ListAuditEventsRequest(
            page_size=page.size, page_token=page.token, resource=resource
        )
        reply = await info.context.unary(APP["ListAuditEvents"], request)
        return page.connection(reply.events, reply.next_page_token, AuditEvent.from_pb)
