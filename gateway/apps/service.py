"""The App gRPC service: decode -> App layer core -> encode, nothing else.

Apps, conversations and usage are the caller's tenant's (`identity.current()`);
tenants, keys and the audit log are the gateway's (role admin). Workflows
and secrets: gateway/apps/workflow_service.py; budgets and prices:
gateway/apps/spend_service.py.

Idempotency: a repeated Create* answers ALREADY_EXISTS (nothing changes),
RevokeApiKey on a revoked key succeeds without a new audit event, Delete of a
missing app answers NOT_FOUND. Chat and Completion pass the caller's deadline
to the Router; a cancelled or failed chat stores no turn.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from gateway import identity
from gateway.apps import wire
from gateway.apps.catalog import AppCatalog, actor, check_id
from gateway.apps.chat import ChatEngine, Cited, Delta, Done
from gateway.apps.model import Tenant, UsageQuery
from gateway.apps.roles import parse_role
from gateway.apps.spend_service import SpendMethods
from gateway.apps.store import Administration, now_ms
from gateway.apps.store.secrets import Secrets
from gateway.apps.workflow_runner import WorkflowRunner
from gateway.apps.workflow_service import WorkflowMethods
from gateway.errors import GatewayError, InvalidArgument
from gateway.identity import Role
from gateway.pb import app_pb2 as pb
from gateway.pb import app_pb2_grpc
from gateway.pb import router_pb2 as rpb
from gateway.rpc import deadline, paged
from gateway.status import abort, translated
from gateway.tasks.queue import TaskQueue
from router.errors import RouterError


def _limit(value: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument(field, f"must be >= 0 (0: unlimited), got {value}")
    return value


class AppService(WorkflowMethods, SpendMethods, app_pb2_grpc.AppServicer):
    def __init__(
        self, store: Administration, catalog: AppCatalog, chat: ChatEngine,
        runner: WorkflowRunner, secrets: Secrets,
    ) -> None:  # fmt: skip
        self._store = store
        self._catalog = catalog
        self._chat = chat
        self._runner = runner
        self._secrets = secrets
        self._queue: TaskQueue | None = None  # SubmitWorkflowRun's: set once the queue is up

    def use_queue(self, queue: TaskQueue) -> None:
        self._queue = queue

    # --- apps -------------------------------------------------------------------------

    @translated
    async def CreateApp(self, request: pb.CreateAppRequest, context: Any) -> pb.AppSpec:
        app_id = check_id(request.app_id, "app_id")
        app = wire.app_from_pb(request.app, identity.current().tenant, app_id)
        return wire.app_to_pb(await self._catalog.create(app))

    @translated
    async def GetApp(self, request: pb.GetAppRequest, context: Any) -> pb.AppSpec:
        app_id = wire.name_id(request.name, "apps", "name")
        return wire.app_to_pb(await self._catalog.get(app_id))

    @translated
    async def ListApps(self, request: pb.ListAppsRequest, context: Any) -> pb.ListAppsResponse:
        limit = wire.page_size(request.page_size)
        apps, token = paged(
            await self._catalog.list(limit + 1, request.page_token), limit, lambda a: a.id
        )
        return pb.ListAppsResponse(apps=[wire.app_to_pb(a) for a in apps], next_page_token=token)

    @translated
    async def UpdateApp(self, request: pb.UpdateAppRequest, context: Any) -> pb.AppSpec:
        app_id = wire.name_id(request.app.name, "apps", "app.name")
        merged = pb.AppSpec()
        if request.update_mask:
            merged.CopyFrom(wire.app_to_pb(await self._catalog.get(app_id)))
            for path in request.update_mask:
                if path not in ("display_name", "model", "prompt_template", "retrieval", "params"):
                    raise InvalidArgument("update_mask", f"cannot update {path!r}")
                merged.ClearField(path)
                _copy_field(request.app, merged, path)
        else:
            merged.CopyFrom(request.app)
        app = wire.app_from_pb(merged, identity.current().tenant, app_id)
        return wire.app_to_pb(await self._catalog.update(app))

    @translated
    async def DeleteApp(self, request: pb.DeleteAppRequest, context: Any) -> empty_pb2.Empty:
        await self._catalog.delete(wire.name_id(request.name, "apps", "name"))
        return empty_pb2.Empty()

    async def Chat(
        self, request: pb.ChatRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatEvent]:
        try:
            app_id = wire.name_id(request.app, "apps", "app")
            inputs = wire.inputs(request.inputs)
            conversation, app, history = await self._chat.start(
                app_id, request.conversation_id, request.query, inputs
            )
            events = self._chat.chat(
                app, conversation, history, request.query, inputs, deadline(context)
            )
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    msg = pb.ChatEvent(conversation_id=conversation)
                    if isinstance(event, Cited):
                        msg.citation.CopyFrom(wire.citation(event.passage))
                    elif isinstance(event, Delta):
                        msg.delta = event.text
                    elif isinstance(event, Done):
                        msg.done.finish_reason = event.finish_reason
                        msg.done.usage.CopyFrom(_usage(event.usage))
                        msg.done.deployment = event.deployment
                    yield msg
        except (GatewayError, RouterError) as exc:
            await abort(context, exc)

    @translated
    async def Completion(self, request: pb.ChatRequest, context: Any) -> pb.CompletionResponse:
        app_id = wire.name_id(request.app, "apps", "app")
        inputs = wire.inputs(request.inputs)
        conversation, app, history = await self._chat.start(
            app_id, request.conversation_id, request.query, inputs
        )
        reply = pb.CompletionResponse(conversation_id=conversation)
        text: list[str] = []
        events = self._chat.chat(
            app, conversation, history, request.query, inputs, deadline(context)
        )
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                if isinstance(event, Cited):
                    reply.citations.append(wire.citation(event.passage))
                elif isinstance(event, Delta):
                    text.append(event.text)
                elif isinstance(event, Done):
                    reply.finish_reason = event.finish_reason
                    reply.usage.CopyFrom(_usage(event.usage))
                    reply.deployment = event.deployment
        reply.text = "".join(text)
        return reply

    @translated
    async def GetCaller(self, request: pb.GetCallerRequest, context: Any) -> pb.Caller:
        principal = identity.current()
        key = f"tenants/{principal.tenant}/keys/{principal.key_id}" if principal.key_id else ""
        return pb.Caller(
            tenant=f"tenants/{principal.tenant}", role=principal.role.name.lower(), key=key
        )

    # --- administration ---------------------------------------------------------------

    @translated
    async def CreateTenant(self, request: pb.CreateTenantRequest, context: Any) -> pb.Tenant:
        t = request.tenant
        tenant = Tenant(
            check_id(request.tenant_id, "tenant_id"),
            t.display_name or request.tenant_id,
            _limit(t.requests_per_minute, "tenant.requests_per_minute"),
            _limit(t.tokens_per_minute, "tenant.tokens_per_minute"),
        )
        return wire.tenant_to_pb(await self._store.tenants.create(tenant, actor()))

    @translated
    async def ListTenants(
        self, request: pb.ListTenantsRequest, context: Any
    ) -> pb.ListTenantsResponse:
        limit = wire.page_size(request.page_size)
        tenants, token = paged(
            await self._store.tenants.list(limit + 1, request.page_token), limit, lambda t: t.id
        )
        return pb.ListTenantsResponse(
            tenants=[wire.tenant_to_pb(t) for t in tenants], next_page_token=token
        )

    @translated
    async def CreateApiKey(self, request: pb.CreateApiKeyRequest, context: Any) -> pb.CreatedApiKey:
        tenant = wire.name_id(request.tenant, "tenants", "tenant")
        key, secret = await self._store.keys.create(
            tenant,
            parse_role(request.role),
            actor(),
            rpm=_limit(request.requests_per_minute, "requests_per_minute"),
            tpm=_limit(request.tokens_per_minute, "tokens_per_minute"),
        )
        return pb.CreatedApiKey(key=wire.key_to_pb(key), secret=secret)

    @translated
    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: Any
    ) -> pb.ListApiKeysResponse:
        tenant = wire.name_id(request.tenant, "tenants", "tenant")
        keys = await self._store.keys.list(tenant)
        return pb.ListApiKeysResponse(keys=[wire.key_to_pb(k) for k in keys])

    @translated
    async def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: Any) -> empty_pb2.Empty:
        tenant, key_id = wire.key_name(request.name)
        await self._store.keys.revoke(tenant, key_id, actor())
        return empty_pb2.Empty()

    @translated
    async def QueryUsage(
        self, request: pb.QueryUsageRequest, context: Any
    ) -> pb.QueryUsageResponse:
        principal = identity.current()
        end = request.end_time.ToMilliseconds() if request.HasField("end_time") else now_ms() + 1
        start = request.start_time.ToMilliseconds() if request.HasField("start_time") else 0
        query = UsageQuery(
            start,
            end,
            tuple(request.group_by),
            request.bucket_seconds,
            # Admins see every tenant; everyone else only their own.
            None if principal.role >= Role.ADMIN else principal.tenant,
        )
        rows = await self._store.usage.query(query)
        return pb.QueryUsageResponse(rows=[wire.usage_row_to_pb(r) for r in rows])

    @translated
    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: Any
    ) -> pb.ListAuditEventsResponse:
        limit = wire.page_size(request.page_size)
        try:
            after = int(request.page_token or 0)
        except ValueError:
            raise InvalidArgument("page_token", "not a token this service issued") from None
        events, token = paged(
            await self._store.audit.list(after, limit + 1, request.resource),
            limit,
            lambda e: str(e.seq),
        )
        return pb.ListAuditEventsResponse(
            events=[wire.event_to_pb(e) for e in events], next_page_token=token
        )


def _copy_field(src: pb.AppSpec, dst: pb.AppSpec, path: str) -> None:
    if path in ("retrieval", "params"):
        if src.HasField(path):
            getattr(dst, path).CopyFrom(getattr(src, path))
    else:
        setattr(dst, path, getattr(src, path))


def _usage(u: Any) -> rpb.Usage:
    return rpb.Usage(
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        total_tokens=u.total_tokens,
        cached_input_tokens=u.cached_input_tokens,
    )
