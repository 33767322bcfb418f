"""The built-in task types: batch generation and batch embeddings through the
Router, and `noop` (smoke tests, benchmarks). Each Router call is reported to
the worker's usage sink (`TaskContext.used`), failed ones included."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from gateway.tasks.errors import InvalidTask, TaskFailed
from gateway.tasks.handlers import ModelCall, TaskContext, TaskType, TaskTypes
from router.errors import InvalidRequest, ModelNotFound, ProviderError, RouterError
from router.types import Message, Params, Request

MAX_ITEMS = 10_000
_CONCURRENCY = 8  # calls in flight per batch task


def register(types: TaskTypes) -> None:
    types.add(TaskType("generate.batch", generate_batch, validate_generate))
    types.add(TaskType("embed.batch", embed_batch, validate_embed))
    types.add(TaskType("noop", noop))


def _strings(payload: Mapping[str, Any], field: str) -> list[str]:
    items = payload.get(field)
    if not isinstance(items, list) or not items:
        raise InvalidTask(f"payload.{field}", "must be a non-empty list of strings")
    if len(items) > MAX_ITEMS:
        raise InvalidTask(f"payload.{field}", f"at most {MAX_ITEMS} items, got {len(items)}")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidTask(f"payload.{field}.{i}", f"must be a string, got {item!r}")
    return items


def _model(payload: Mapping[str, Any]) -> str:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidTask("payload.model", "is required")
    return model


def validate_generate(payload: Mapping[str, Any]) -> None:
    _model(payload)
    _strings(payload, "prompts")
    max_tokens = payload.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int | float) or max_tokens < 1):
        raise InvalidTask("payload.max_tokens", f"must be a positive integer, got {max_tokens!r}")
    temperature = payload.get("temperature")
    if temperature is not None and not isinstance(temperature, int | float):
        raise InvalidTask("payload.temperature", f"must be a number, got {temperature!r}")


def validate_embed(payload: Mapping[str, Any]) -> None:
    _model(payload)
    _strings(payload, "inputs")


def _failed(exc: RouterError) -> TaskFailed:
    """Bad requests fail for good; upstream trouble is worth another attempt."""
    retryable = not isinstance(exc, InvalidRequest | ModelNotFound) and (
        not isinstance(exc, ProviderError) or exc.retryable
    )
    return TaskFailed(f"{type(exc).__name__}: {exc}", retryable=retryable)


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _refused(ctx: TaskContext, model: str, started: float, exc: RouterError) -> None:
    ctx.used(ModelCall(model, "", 0, 0, _elapsed_ms(started), exc))


async def generate_batch(ctx: TaskContext, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """Every prompt through the Router (up to 8 at once); all or nothing."""
    max_tokens = payload.get("max_tokens")
    params = Params(
        temperature=payload.get("temperature"),
        max_tokens=int(max_tokens) if max_tokens is not None else None,
    )
    system = payload.get("system")
    head = (Message("system", system),) if isinstance(system, str) and system else ()
    limit = asyncio.Semaphore(_CONCURRENCY)
    router = ctx.router

    async def one(i: int, prompt: str) -> dict[str, Any]:
        request = Request(
            model=payload["model"],
            messages=(*head, Message("user", prompt)),
            params=params,
            request_id=f"task-{ctx.task.id}-{i}",
        )
        async with limit:
            started = time.perf_counter()
            try:
                routed = await router.generate(request)
            except RouterError as exc:
                _refused(ctx, request.model, started, exc)
                raise
        response = routed.response
        usage = response.usage
        ctx.used(
            ModelCall(request.model, routed.deployment, usage.input_tokens, usage.output_tokens,
                      _elapsed_ms(started))
        )  # fmt: skip
        return {
            "text": response.text,
            "finish_reason": response.finish_reason,
            "input_tokens": response.usage.input_tokens,
            "output_tokens": response.usage.output_tokens,
            "deployment": routed.deployment,
        }

    try:
        outputs = await asyncio.gather(*(one(i, p) for i, p in enumerate(payload["prompts"])))
    except RouterError as exc:
        raise _failed(exc) from exc
    return {
        "outputs": outputs,
        "usage": {
            "input_tokens": sum(o["input_tokens"] for o in outputs),
            "output_tokens": sum(o["output_tokens"] for o in outputs),
        },
    }


async def embed_batch(ctx: TaskContext, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    model, started = payload["model"], time.perf_counter()
    try:
        routed = await ctx.router.embed(model, payload["inputs"])
    except RouterError as exc:
        _refused(ctx, model, started, exc)
        raise _failed(exc) from exc
    usage = routed.embeddings.usage
    ctx.used(ModelCall(model, routed.deployment, usage.input_tokens, 0, _elapsed_ms(started)))
    return {
        "vectors": routed.embeddings.vectors,
        "deployment": routed.deployment,
        "usage": {"input_tokens": usage.input_tokens},
    }


async def noop(ctx: TaskContext, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    return {}
