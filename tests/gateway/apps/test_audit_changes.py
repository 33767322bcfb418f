"""Changes made outside the App store are audited too: config reloads (applied
and rejected) and Dataset collections created or deleted, on the same chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import yaml
from google.protobuf import json_format

from gateway.apps.audit import verify
from gateway.pb import app_pb2, app_pb2_grpc, dataset_pb2, dataset_pb2_grpc
from gateway.server import Gateway
from tests.conftest import StartGateway
from tests.gateway.apps.test_auth import bearer, new_key, secure_top


async def audit_log(gateway: Gateway, metadata: Any = None) -> list[app_pb2.AuditEvent]:
    """Every event through ListAuditEvents, after checking the stored chain."""
    assert gateway.apps is not None
    stored = [e async for e in gateway.apps.store.audit.events()]
    assert verify(stored).ok
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        page = await app_pb2_grpc.AppStub(channel).ListAuditEvents(
            app_pb2.ListAuditEventsRequest(page_size=100), metadata=metadata
        )
    return list(page.events)


def as_dict(struct: Any) -> dict[str, Any]:
    return json_format.MessageToDict(struct)


def write_config(path: Path, models: dict[str, list[str]], **options: Any) -> None:
    path.write_text(yaml.safe_dump({
        "routing": {"probe_interval_s": 0},
        "models": {
            alias: {"deployments": [{"name": n, "provider": "mock", "model": "echo",
                                     "options": options} for n in names]}
            for alias, names in models.items()
        },
    }))  # fmt: skip


async def test_reloads_applied_and_rejected_are_audited_without_options(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    path = tmp_path / "gateway.yaml"
    write_config(path, {"chat": ["a"]})
    top = {"data_dir": str(tmp_path / "data"), "apps": {"auth": {"enabled": False}}}
    gateway = await start_gateway(
        models={"chat": {"deployments": [{"name": "a", "provider": "mock", "model": "echo"}]}},
        top=top, config_path=path,
    )  # fmt: skip
    assert gateway.reloader is not None
    write_config(path, {"chat": ["a", "b"], "extra": ["e"]}, tokens=7)
    assert await gateway.reloader.reload("sighup")
    # A bad option's value is echoed by the config error: it must not reach the log.
    write_config(path, {"chat": ["a"]}, password="hunter2")
    assert not await gateway.reloader.reload()

    applied, rejected = await audit_log(gateway)
    assert (applied.actor, applied.action, applied.resource) == (
        "system:sighup", "ReloadConfig", "config",
    )  # fmt: skip
    assert as_dict(applied.before) == {"models": {"chat": ["a"]}}
    assert as_dict(applied.after) == {"models": {"chat": ["a", "b"], "extra": ["e"]}}
    assert (rejected.actor, rejected.action) == ("system:file", "RejectConfigReload")
    assert as_dict(rejected.before) == as_dict(applied.after)  # still serving
    after = as_dict(rejected.after)
    assert after["path"] == str(path.resolve())
    assert after["error"].startswith("models.chat.deployments.0: mock: password='***'")
    assert "hunter2" not in str(rejected) and "tokens" not in str(applied)  # options stay out
    assert rejected.prev_hash == applied.hash


async def test_collection_create_and_delete_are_audited_as_the_caller(
    start_gateway: StartGateway, tmp_path: Path, tiny_model: Path
) -> None:
    top = {
        **secure_top(tmp_path / "data"),
        "dataset": {"snapshot_interval_s": 0, "embedder": {"model_dir": str(tiny_model)}},
    }
    gateway = await start_gateway(top=top)
    assert gateway.apps is not None and gateway.apps.admin_secret is not None
    admin = bearer(gateway.apps.admin_secret)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        developer = bearer(await new_key(channel, gateway, "acme", "developer"))
        stub = dataset_pb2_grpc.DatasetStub(channel)
        spec = dataset_pb2.Collection(display_name="Docs", chunk_tokens=32)
        await stub.CreateCollection(
            dataset_pb2.CreateCollectionRequest(collection_id="docs", collection=spec),
            metadata=developer,
        )
        await stub.DeleteCollection(
            dataset_pb2.DeleteCollectionRequest(name="collections/docs"), metadata=developer
        )
        try:  # a failed deletion changes nothing, so it leaves no event
            await stub.DeleteCollection(
                dataset_pb2.DeleteCollectionRequest(name="collections/docs"), metadata=developer
            )
        except grpc.aio.AioRpcError as exc:
            assert exc.code() is grpc.StatusCode.NOT_FOUND
        else:
            raise AssertionError("deleting a deleted collection succeeded")

    events = await audit_log(gateway, admin)
    created, deleted = (e for e in events if e.resource == "tenants/acme/collections/docs")
    assert created.action == "CreateCollection" and deleted.action == "DeleteCollection"
    # The developer's key acted (the audit log names keys by resource), not the admin.
    developer_key = next(e.resource for e in events if e.action == "CreateApiKey"
                         and e.resource.startswith("tenants/acme/keys/"))  # fmt: skip
    assert created.actor == deleted.actor == developer_key
    assert not created.HasField("before") and not deleted.HasField("after")
    made = as_dict(created.after)
    assert (made["tenant"], made["id"], made["display_name"], made["chunk_tokens"]) == (
        "acme", "docs", "Docs", 32,
    )  # fmt: skip
    assert as_dict(deleted.before)["id"] == "docs"
    assert [e.action for e in events].count("DeleteCollection") == 1
    assert events[-1].resource == "tenants/acme/collections/docs"
