"""Protobuf <-> domain conversion for the App service, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from gateway.apps.model import ApiKey, App, AuditEvent, Retrieval, Tenant, UsageRow
from gateway.apps.retrieval import Passage
from gateway.errors import InvalidArgument
from gateway.pb import app_pb2 as pb
from gateway.pb import router_pb2
from gateway.router import wire as router_wire
from router.errors import InvalidRequest
from router.types import Message, Params, Request
from router.validate import validate


def _ts(ms: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def name_id(name: str, collection: str, field: str) -> str:
    """'apps/x' -> 'x' (a bare id is accepted too)."""
    head, _, tail = name.rpartition("/")
    if (head and head != collection) or not tail:
        raise InvalidArgument(field, f"must be {collection}/{{id}}, got {name!r}")
    return tail


def key_name(name: str) -> tuple[str, str]:
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "tenants" or parts[2] != "keys" or not all(parts):
        raise InvalidArgument("name", f"must be tenants/{{tenant}}/keys/{{key}}, got {name!r}")
    return parts[1], parts[3]


def app_from_pb(msg: pb.AppSpec, tenant: str, app_id: str) -> App:
    r = msg.retrieval
    return App(
        tenant=tenant,
        id=app_id,
        model=msg.model,
        display_name=msg.display_name,
        prompt_template=msg.prompt_template,
        retrieval=Retrieval(tuple(r.collections), r.k or 4, r.score_threshold),
        params=json_format.MessageToDict(msg.params) if msg.HasField("params") else {},
    )


def app_to_pb(app: App) -> pb.AppSpec:
    r = app.retrieval
    return pb.AppSpec(
        name=f"apps/{app.id}",
        display_name=app.display_name,
        model=app.model,
        prompt_template=app.prompt_template,
        retrieval=pb.Retrieval(
            collections=list(r.collections), k=r.k, score_threshold=r.score_threshold
        ),
        params=json_format.ParseDict(dict(app.params), router_pb2.GenerationParams()),
        create_time=_ts(app.created_ms),
        update_time=_ts(app.updated_ms),
    )


def params(app: App) -> Params:
    """The app's generation params as the Router takes them."""
    msg = json_format.ParseDict(dict(app.params), router_pb2.GenerationParams())
    return router_wire.request_from_pb(
        router_pb2.GenerateRequest(model=app.model, params=msg)
    ).params


def check_params(app: App) -> None:
    try:
        validate(Request(app.model, (Message("user", "x"),), params(app)))
    except InvalidRequest as exc:
        raise InvalidArgument(f"app.{exc.field}", str(exc).split(": ", 1)[-1]) from None


def inputs(msg: struct_pb2.Struct) -> Mapping[str, Any]:
    return json_format.MessageToDict(msg)


def citation(p: Passage) -> pb.Citation:
    return pb.Citation(
        collection=p.collection, document_id=p.document_id, chunk_id=p.chunk_id,
        score=p.score, text=p.text,
    )  # fmt: skip


def tenant_to_pb(t: Tenant) -> pb.Tenant:
    return pb.Tenant(
        name=f"tenants/{t.id}", display_name=t.display_name,
        requests_per_minute=t.requests_per_minute, tokens_per_minute=t.tokens_per_minute,
        create_time=_ts(t.created_ms),
    )  # fmt: skip


def key_to_pb(k: ApiKey) -> pb.ApiKey:
    msg = pb.ApiKey(
        name=f"tenants/{k.tenant}/keys/{k.id}", role=k.role.name.lower(), prefix=k.prefix,
        requests_per_minute=k.requests_per_minute, tokens_per_minute=k.tokens_per_minute,
        create_time=_ts(k.created_ms),
    )  # fmt: skip
    if k.revoked_ms is not None:
        msg.revoke_time.CopyFrom(_ts(k.revoked_ms))
    return msg


def usage_row_to_pb(r: UsageRow) -> pb.UsageRow:
    return pb.UsageRow(
        bucket_start=_ts(r.bucket_start_ms), group=dict(r.group), requests=r.requests,
        input_tokens=r.input_tokens, output_tokens=r.output_tokens, errors=r.errors,
    )  # fmt: skip


def _struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    s = struct_pb2.Struct()
    s.update(value)
    return s


def event_to_pb(e: AuditEvent) -> pb.AuditEvent:
    return pb.AuditEvent(
        sequence=e.seq, time=_ts(e.ts_ms), actor=e.actor, action=e.action,
        resource=e.resource, before=_struct(e.before), after=_struct(e.after),
        prev_hash=e.prev_hash, hash=e.hash,
    )  # fmt: skip
