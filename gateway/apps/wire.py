"""Protobuf <-> domain conversion for the App service, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from gateway.apps.model import (
    BUDGET_PERIODS,
    ApiKey,
    App,
    AuditEvent,
    BudgetRule,
    Retrieval,
    Tenant,
    UsageRow,
)
from gateway.apps.retrieval import Passage
from gateway.apps.workflows.events import NodeFinished, RunFinished
from gateway.apps.workflows.model import RunRecord, SecretInfo, Version, Workflow
from gateway.apps.workflows.nodes.base import NodeType
from gateway.errors import InvalidArgument
from gateway.pb import app_pb2 as pb
from gateway.pb import router_pb2
from gateway.router import wire as router_wire
from router.errors import InvalidRequest
from router.pricing import API, NANOS_PER_USD, Price, PriceEntry, usd
from router.types import Message, Params, Request
from router.validate import validate


def _ts(ms: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(ms)
    return ts


_PAGE, _MAX_PAGE = 50, 1000


def page_size(size: int) -> int:
    """A listing's page size: 50 when 0, at most 1000."""
    if size < 0:
        raise InvalidArgument("page_size", f"must be >= 0, got {size}")
    return min(size or _PAGE, _MAX_PAGE)


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
        retrieval=Retrieval(
            tuple(r.collections), r.k or 4, r.score_threshold, r.rerank, r.rerank_top_n
        ),
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
            collections=list(r.collections),
            k=r.k,
            score_threshold=r.score_threshold,
            rerank=r.rerank,
            rerank_top_n=r.rerank_top_n,
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
        score=p.score, text=p.text, rerank_score=p.rerank_score,
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
        cost_usd=usd(r.cost_nanos),
    )  # fmt: skip


def budget_subject(name: str, field: str = "name") -> tuple[str, str, str]:
    """(scope, tenant, subject) of a budget's name: "tenants/{t}",
    "tenants/{t}/keys/{k}", "tenants/{t}/apps/{a}" or, for a workflow's runs,
    "tenants/{t}/apps/workflows/{w}" (subject "workflows/{w}", the app its
    usage records carry)."""
    parts = name.split("/")
    if len(parts) == 2 and parts[0] == "tenants" and parts[1]:
        return "tenant", parts[1], parts[1]
    if (
        len(parts) == 4 and parts[0] == "tenants" and parts[2] in ("keys", "apps")
        and parts[1] and parts[3] and parts[3] != "workflows"
    ):  # fmt: skip
        return parts[2][:-1], parts[1], parts[3]
    if (
        len(parts) == 5
        and parts[0] == "tenants"
        and parts[2:4] == ["apps", "workflows"]
        and all(parts)
    ):
        return "app", parts[1], f"workflows/{parts[4]}"
    raise InvalidArgument(
        field, f"must be tenants/{{t}}, tenants/{{t}}/keys/{{key}}, tenants/{{t}}/apps/{{app}} or "
        f"tenants/{{t}}/apps/workflows/{{workflow}}, got {name!r}",
    )  # fmt: skip


def budget_from_pb(msg: pb.Budget) -> BudgetRule:
    scope, tenant, subject = budget_subject(msg.name, "budget.name")
    if not 0 <= msg.limit_usd < 1e9:  # NaN fails too
        raise InvalidArgument("budget.limit_usd", f"must be 0 to 1e9 USD, got {msg.limit_usd}")
    period = msg.period or "monthly"
    if period not in BUDGET_PERIODS:
        raise InvalidArgument(
            "budget.period", f"must be one of {list(BUDGET_PERIODS)}, got {period!r}"
        )
    if not 0 <= msg.alert_share < 1:
        raise InvalidArgument(
            "budget.alert_share", f"must be from 0 (no alert) to below 1, got {msg.alert_share}"
        )
    limit = round(msg.limit_usd * NANOS_PER_USD)
    return BudgetRule(scope, tenant, subject, limit, period, msg.alert_share)


def budget_to_pb(rule: BudgetRule, spent: int, end: int | None) -> pb.Budget:
    msg = pb.Budget(
        name=rule.name, limit_usd=usd(rule.limit_nanos), period=rule.period,
        alert_share=rule.alert_share, spent_usd=usd(spent), update_time=_ts(rule.updated_ms),
    )  # fmt: skip
    if end is not None:
        msg.reset_time.CopyFrom(_ts(end * 1000))
    return msg


_MAX_RATE = 1e6  # USD per million tokens (or per call): beyond any real price


def price_from_pb(msg: pb.Price, field: str = "price") -> tuple[str, Price]:
    """(deployment, price) of a SetPrice request; InvalidArgument naming the field."""
    if not msg.deployment:
        raise InvalidArgument(f"{field}.deployment", "is required: the deployment's name")
    rates = {}
    for name in ("input", "cached_input", "output", "request", "embedding"):
        value = getattr(msg, name)
        if not 0 <= value <= _MAX_RATE:  # NaN fails too
            raise InvalidArgument(f"{field}.{name}", f"must be 0 to {_MAX_RATE:g} USD, got {value}")
        rates[name] = value
    return msg.deployment, Price(**rates, source=API)


def price_to_pb(e: PriceEntry) -> pb.Price:
    p = e.price
    return pb.Price(
        model=e.alias, deployment=e.deployment, provider=e.provider, upstream_model=e.model,
        input=p.input, cached_input=p.cached_input, output=p.output, request=p.request,
        embedding=p.embedding, source=p.source,
    )  # fmt: skip


def event_to_pb(e: AuditEvent) -> pb.AuditEvent:
    return pb.AuditEvent(
        sequence=e.seq, time=_ts(e.ts_ms), actor=e.actor, action=e.action,
        resource=e.resource, before=None if e.before is None else struct(e.before),
        after=None if e.after is None else struct(e.after),
        prev_hash=e.prev_hash, hash=e.hash,
    )  # fmt: skip


# --- workflows ----------------------------------------------------------------------------


def struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(_jsonable(value))
    return s


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return str(value)


def workflow_to_pb(w: Workflow, version: Version | None = None) -> pb.Workflow:
    msg = pb.Workflow(
        name=f"workflows/{w.id}", display_name=w.display_name, description=w.description,
        latest_version=w.latest_version, published_version=w.published_version,
        create_time=_ts(w.created_ms), update_time=_ts(w.updated_ms),
    )  # fmt: skip
    if version is not None:
        msg.version = version.version
        msg.definition.CopyFrom(struct(version.definition))
    return msg


def version_to_pb(v: Version) -> pb.WorkflowVersion:
    return pb.WorkflowVersion(
        version=v.version, actor=v.actor, create_time=_ts(v.created_ms),
        definition=struct(v.definition),
    )  # fmt: skip


def node_type_to_pb(t: NodeType) -> pb.NodeType:
    return pb.NodeType(
        type=t.name, description=t.description, config_schema=struct(t.schema),
        outputs=dict(t.outputs), streams=t.streams, branches=_branches(t),
    )  # fmt: skip


def _branches(t: NodeType) -> bool:
    return type(t).branches is not NodeType.branches


def _usage_pb(input_tokens: int, output_tokens: int) -> router_pb2.Usage:
    return router_pb2.Usage(
        input_tokens=input_tokens, output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )  # fmt: skip


def node_run_to_pb(e: NodeFinished) -> pb.WorkflowNodeRun:
    return pb.WorkflowNodeRun(
        node=e.node, type=e.type, status=e.status, inputs=struct(e.inputs),
        outputs=struct(e.outputs), error=e.error, latency_ms=e.latency_ms,
        usage=_usage_pb(e.usage.input_tokens, e.usage.output_tokens), branch=e.branch,
        attempts=e.attempts,
    )  # fmt: skip


def run_finished_to_pb(e: RunFinished) -> pb.WorkflowEvent.RunFinished:
    return pb.WorkflowEvent.RunFinished(
        status=e.status, outputs=struct(e.outputs),
        usage=_usage_pb(e.usage.input_tokens, e.usage.output_tokens), error=e.error,
        error_node=e.error_node,
    )  # fmt: skip


def run_to_pb(r: RunRecord, with_nodes: bool = True) -> pb.WorkflowRun:
    msg = pb.WorkflowRun(
        name=f"workflows/{r.workflow}/runs/{r.id}", version=r.version, status=r.status,
        inputs=struct(r.inputs), outputs=struct(r.outputs), error=r.error,
        usage=_usage_pb(r.input_tokens, r.output_tokens), start_time=_ts(r.started_ms),
    )  # fmt: skip
    if r.finished_ms is not None:
        msg.end_time.CopyFrom(_ts(r.finished_ms))
    if with_nodes:
        for n in r.nodes:
            msg.nodes.append(pb.WorkflowNodeRun(
                node=n["node"], type=n["type"], status=n["status"], inputs=struct(n["inputs"]),
                outputs=struct(n["outputs"]), error=n["error"], latency_ms=n["latency_ms"],
                usage=_usage_pb(n["input_tokens"], n["output_tokens"]), branch=n["branch"],
                attempts=n["attempts"],
            ))  # fmt: skip
    return msg


def secret_to_pb(s: SecretInfo) -> pb.Secret:
    return pb.Secret(
        name=f"secrets/{s.name}", create_time=_ts(s.created_ms), update_time=_ts(s.updated_ms)
    )
