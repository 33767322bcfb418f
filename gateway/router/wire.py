"""Protobuf <-> domain conversion for the Router service, in one place."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from google.protobuf import json_format, struct_pb2

from gateway.pb import router_pb2 as pb
from router.errors import InvalidRequest
from router.plan import Decision, Deployment, Model
from router.types import (
    Chunk,
    ContentPart,
    Message,
    Params,
    Ranking,
    Request,
    Response,
    ResponseFormat,
    Tool,
    ToolCall,
    Usage,
)

_NO_METADATA: Mapping[str, str] = MappingProxyType({})


def ranking_to_pb(
    model: str, deployment: str, ranking: Ranking, texts: Sequence[str] | None
) -> pb.RerankResponse:
    """`texts` (the request's documents) fill each result's `document`; None: not asked."""
    usage = ranking.usage
    return pb.RerankResponse(
        model=model,
        deployment=deployment,
        results=[
            pb.RerankResult(
                index=r.index,
                relevance_score=r.score,
                document=texts[r.index] if texts is not None else "",
            )
            for r in ranking.results
        ],
        usage=pb.Usage(input_tokens=usage.input_tokens, total_tokens=usage.total_tokens),
        search_units=ranking.search_units,
    )


def request_from_pb(
    msg: pb.GenerateRequest, request_id: str = "", deployment: str = "", semantic: bool = False
) -> Request:
    """`deployment` and `semantic` (from metadata) apply when the message
    names no deployment / does not ask for semantic caching itself."""
    return Request(
        model=msg.model,
        messages=tuple([_message(m) for m in msg.messages]),
        params=_params(msg.params) if msg.HasField("params") else Params(),
        deployment=msg.deployment or deployment,
        metadata=dict(msg.metadata) if msg.metadata else _NO_METADATA,
        cache=msg.cache,
        semantic_cache=msg.semantic_cache or semantic,
        request_id=request_id,
        max_cost_usd=_ceiling(msg) if msg.HasField("max_cost_usd") else None,
    )


def _ceiling(msg: pb.GenerateRequest) -> float:
    if not 0 < msg.max_cost_usd < math.inf:
        raise InvalidRequest(
            "max_cost_usd", f"must be a positive USD amount, got {msg.max_cost_usd}"
        )
    return msg.max_cost_usd


def _message(m: pb.Message) -> Message:
    # Most messages are plain text: skip building empty tuples (hot path).
    if not (m.parts or m.tool_calls or m.name or m.tool_call_id):
        return Message(m.role, m.content)
    return Message(
        role=m.role,
        content=m.content,
        parts=tuple([_part(p) for p in m.parts]),
        name=m.name,
        tool_calls=tuple([ToolCall(c.id, c.name, c.arguments) for c in m.tool_calls]),
        tool_call_id=m.tool_call_id,
    )


def _part(p: pb.ContentPart) -> ContentPart:
    kind = p.WhichOneof("kind")
    return ContentPart(image_url=p.image_url) if kind == "image_url" else ContentPart(text=p.text)


def _params(p: pb.GenerationParams) -> Params:
    fmt = p.response_format
    return Params(
        temperature=p.temperature if p.HasField("temperature") else None,
        top_p=p.top_p if p.HasField("top_p") else None,
        max_tokens=p.max_tokens if p.HasField("max_tokens") else None,
        stop=tuple(p.stop),
        response_format=ResponseFormat(
            type=fmt.type or "text",
            schema_name=fmt.schema_name,
            json_schema=_dict(fmt.json_schema, "params.response_format.json_schema")
            if fmt.HasField("json_schema")
            else None,
        )
        if p.HasField("response_format")
        else None,
        tools=tuple(
            Tool(
                t.name,
                t.description,
                _dict(t.parameters, f"params.tools[{i}].parameters")
                if t.HasField("parameters")
                else None,
            )
            for i, t in enumerate(p.tools)
        ),
        tool_choice=p.tool_choice,
        seed=p.seed if p.HasField("seed") else None,
    )


def _dict(s: struct_pb2.Struct, field: str) -> dict[str, object]:
    try:
        return json_format.MessageToDict(s)
    except (ValueError, json_format.Error) as exc:  # NaN / Infinity have no JSON form
        raise InvalidRequest(field, f"not representable as JSON: {exc}") from None


def _usage(u: Usage) -> pb.Usage:
    return pb.Usage(
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        total_tokens=u.total_tokens,
        cached_input_tokens=u.cached_input_tokens,
    )


def _tool_calls(calls: tuple[ToolCall, ...]) -> list[pb.ToolCall]:
    return [pb.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in calls]


def response_to_pb(rid: str, model: str, deployment: str, r: Response) -> pb.GenerateResponse:
    return pb.GenerateResponse(
        id=rid,
        model=model,
        deployment=deployment,
        text=r.text,
        tool_calls=_tool_calls(r.tool_calls),
        finish_reason=r.finish_reason,
        usage=_usage(r.usage),
    )


def chunk_to_pb(rid: str, c: Chunk) -> pb.GenerateChunk:
    msg = pb.GenerateChunk(id=rid, delta=c.delta, finish_reason=c.finish_reason)
    if c.tool_calls:
        msg.tool_calls.extend(_tool_calls(c.tool_calls))
    if c.usage is not None:
        msg.usage.CopyFrom(_usage(c.usage))
    return msg


def decision_to_pb(d: Decision) -> pb.RouteDecision:
    upstream = struct_pb2.Struct()
    upstream.update(d.upstream_request)
    return pb.RouteDecision(
        model=d.model,
        strategy=d.strategy,
        deployment=d.deployment,
        provider=d.provider,
        candidates=[
            pb.RouteCandidate(
                deployment=c.deployment, provider=c.provider, skip_reason=c.skip_reason
            )
            for c in d.candidates
        ],
        upstream_request=upstream,
        upstream_body=d.upstream_body.decode(),
    )


def model_to_pb(m: Model) -> pb.Model:
    return pb.Model(
        alias=m.alias,
        strategy=m.config.strategy,
        fallbacks=list(m.config.fallbacks),
        deployments=[
            pb.Deployment(
                name=d.name,
                provider=d.config.provider,
                upstream_model=d.config.model,
                weight=d.config.weight,
            )
            for d in m.deployments
        ],
    )


def health_to_pb(m: Model, d: Deployment) -> pb.DeploymentHealth:
    state = d.state
    calls, failed = state.breaker.window()
    reason = state.skip_reason()
    health = pb.DeploymentHealth(
        model=m.alias,
        deployment=d.name,
        provider=d.config.provider,
        healthy=not reason,
        reason=reason,
        breaker_state=state.breaker.state.value,
        ewma_ttft_ms=(state.ewma_ttft_s or 0.0) * 1000.0,
        ewma_ms_per_token=(state.ewma_token_s or 0.0) * 1000.0,
        error_rate=failed / calls if calls else 0.0,
        in_flight=state.in_flight,
        last_error=""
        if state.last_error is None
        else f"{state.last_error.kind}: {state.last_error}",
        requests=state.requests,
        failures=state.failures,
    )
    if state.last_probe_time is not None:
        health.last_probe_time.FromNanoseconds(int(state.last_probe_time * 1e9))
    return health
