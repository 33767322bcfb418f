"""Auth over real gRPC: keys, roles per RPC, revocation, the first-start admin key,
and secrets kept out of errors and logs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.apps import roles
from gateway.identity import Role
from gateway.pb import app_pb2, app_pb2_grpc, dataset_pb2, router_pb2, router_pb2_grpc, tasks_pb2
from gateway.server import Gateway
from tests.conftest import StartGateway, chat


def secure_top(data_dir: Path, **apps: Any) -> dict[str, Any]:
    """Top-level config with auth on and the store in `data_dir`."""
    return {
        "data_dir": str(data_dir),
        "apps": {"auth": {"enabled": True, "cache_ttl_s": 0.2},
                 "usage": {"flush_interval_s": 0.05}, **apps},
    }  # fmt: skip


def bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


@pytest.fixture
async def secure(start_gateway: StartGateway, tmp_path: Path) -> Gateway:
    return await start_gateway(top=secure_top(tmp_path))


@pytest.fixture
async def channel(secure: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(secure.address) as ch:
        yield ch


def admin(gateway: Gateway) -> tuple[tuple[str, str], ...]:
    assert gateway.apps is not None and gateway.apps.admin_secret is not None
    return bearer(gateway.apps.admin_secret)


async def new_key(
    channel: grpc.aio.Channel, gateway: Gateway, tenant: str, role: str, **limits: int
) -> str:
    """A key for `tenant` (created when missing), made by the bootstrap admin."""
    stub = app_pb2_grpc.AppStub(channel)
    try:
        await stub.CreateTenant(
            app_pb2.CreateTenantRequest(tenant_id=tenant), metadata=admin(gateway)
        )
    except grpc.aio.AioRpcError as exc:
        assert exc.code() is grpc.StatusCode.ALREADY_EXISTS
    created = await stub.CreateApiKey(
        app_pb2.CreateApiKeyRequest(tenant=f"tenants/{tenant}", role=role, **limits),
        metadata=admin(gateway),
    )
    return created.secret


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        result = call
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_every_rpc_of_every_service_has_a_role() -> None:
    services = [
        m.DESCRIPTOR.services_by_name[name]
        for m, name in ((router_pb2, "Router"), (dataset_pb2, "Dataset"), (app_pb2, "App"),
                        (tasks_pb2, "Tasks"))
    ]  # fmt: skip
    methods = {f"/{s.full_name}/{m.name}" for s in services for m in s.methods}
    assert methods == set(roles.REQUIRED)
    assert roles.required("/infergate.v1.Router/SomethingNew") is Role.ADMIN  # fail closed


async def test_missing_or_wrong_key_is_unauthenticated(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stub = router_pb2_grpc.RouterStub(channel)
    wrong = "igk_0123456789abcdef_notarealsecretatallnotarealsecretatall000"
    for metadata in ((), bearer(wrong), (("authorization", "Basic Zm9vOmJhcg=="),)):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.ListModels(router_pb2.ListModelsRequest(), metadata=metadata)
        assert exc.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert wrong not in (exc.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as exc:  # a stream is refused the same way
        async for _ in stub.GenerateStream(chat("chat"), metadata=bearer(wrong)):
            pass
    assert exc.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert wrong not in caplog.text


async def test_health_and_reflection_need_no_key(channel: grpc.aio.Channel) -> None:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_roles_are_enforced_per_rpc(channel: grpc.aio.Channel, secure: Gateway) -> None:
    user = bearer(await new_key(channel, secure, "acme", "user"))
    dev = bearer(await new_key(channel, secure, "acme", "developer"))
    router = router_pb2_grpc.RouterStub(channel)
    apps = app_pb2_grpc.AppStub(channel)
    spec = app_pb2.CreateAppRequest(app_id="helpdesk", app=app_pb2.AppSpec(model="chat"))
    denied, ok = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.OK
    expectations: list[tuple[Any, grpc.StatusCode]] = [
        (lambda: router.Generate(chat("chat"), metadata=user), ok),
        (lambda: router.GenerateStream(chat("chat"), metadata=user), ok),
        (lambda: router.Route(chat("chat"), metadata=user), denied),
        (lambda: router.Route(chat("chat"), metadata=dev), ok),
        (lambda: apps.CreateApp(spec, metadata=user), denied),
        (lambda: apps.CreateApp(spec, metadata=dev), ok),
        (lambda: apps.GetApp(app_pb2.GetAppRequest(name="apps/helpdesk"), metadata=user), ok),
        (lambda: apps.QueryUsage(app_pb2.QueryUsageRequest(), metadata=user), denied),
        (lambda: apps.QueryUsage(app_pb2.QueryUsageRequest(), metadata=dev), ok),
        (lambda: apps.ListTenants(app_pb2.ListTenantsRequest(), metadata=dev), denied),
        (
            lambda: apps.CreateApiKey(
                app_pb2.CreateApiKeyRequest(tenant="tenants/acme", role="admin"), metadata=dev
            ),
            denied,
        ),
        (lambda: apps.ListAuditEvents(app_pb2.ListAuditEventsRequest(), metadata=dev), denied),
        (
            lambda: apps.ListAuditEvents(app_pb2.ListAuditEventsRequest(), metadata=admin(secure)),
            ok,
        ),
    ]
    for call, expected in expectations:  # one at a time: a call starts when it is made
        assert await code_of(call()) is expected


async def test_a_revoked_key_stops_working_within_the_cache_ttl(
    channel: grpc.aio.Channel, secure: Gateway
) -> None:
    secret = await new_key(channel, secure, "acme", "user")
    stub = router_pb2_grpc.RouterStub(channel)
    await stub.ListModels(router_pb2.ListModelsRequest(), metadata=bearer(secret))  # now cached
    keys = await app_pb2_grpc.AppStub(channel).ListApiKeys(
        app_pb2.ListApiKeysRequest(tenant="tenants/acme"), metadata=admin(secure)
    )
    assert all(secret not in str(k) for k in keys.keys)  # lists never show secrets
    await app_pb2_grpc.AppStub(channel).RevokeApiKey(
        app_pb2.RevokeApiKeyRequest(name=keys.keys[0].name), metadata=admin(secure)
    )
    revoked_at = time.monotonic()
    while True:
        code = await code_of(
            stub.ListModels(router_pb2.ListModelsRequest(), metadata=bearer(secret))
        )
        if code is grpc.StatusCode.UNAUTHENTICATED:
            break
        assert code is grpc.StatusCode.OK
        assert time.monotonic() - revoked_at < 0.2 + 0.5, "revocation not honoured within the TTL"
        await asyncio.sleep(0.02)


async def test_first_start_prints_an_admin_key_once(
    start_gateway: StartGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = await start_gateway(top=secure_top(tmp_path))
    assert first.apps is not None and first.apps.admin_secret is not None
    out = capsys.readouterr().out
    assert first.apps.admin_secret in out and "shown once" in out
    second = await start_gateway(top=secure_top(tmp_path))
    assert second.apps is not None and second.apps.admin_secret is None
    assert "igk_" not in capsys.readouterr().out
    async with grpc.aio.insecure_channel(second.address) as ch:  # the first key still works
        stub = app_pb2_grpc.AppStub(ch)
        tenants = await stub.ListTenants(app_pb2.ListTenantsRequest(), metadata=admin(first))
    assert [t.name for t in tenants.tenants] == ["tenants/default"]


async def test_auth_off_runs_every_call_as_the_default_tenant(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await start_gateway(
        top={"data_dir": str(tmp_path)} | {"apps": {"auth": {"enabled": False}}}
    )
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        stub = app_pb2_grpc.AppStub(ch)
        await stub.CreateApp(
            app_pb2.CreateAppRequest(app_id="a", app=app_pb2.AppSpec(model="chat"))
        )
        events = await stub.ListAuditEvents(app_pb2.ListAuditEventsRequest())
    assert [(e.actor, e.resource) for e in events.events] == [
        ("tenants/default/anonymous", "tenants/default/apps/a")
    ]
