"""A closed-loop gRPC load generator: N concurrent callers, HDR histograms in µs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from hdrh.histogram import HdrHistogram

from gateway.pb import router_pb2 as pb
from gateway.pb import router_pb2_grpc

PROMPT = "tell me about inference gateways and why they matter"


def histogram() -> HdrHistogram:
    return HdrHistogram(1, 60_000_000, 3)  # 1 µs .. 60 s, 3 significant digits


@dataclass
class Result:
    seconds: float = 0.0
    calls: int = 0
    tokens: int = 0
    errors: int = 0
    latency: HdrHistogram = field(default_factory=histogram)
    first_token: HdrHistogram = field(default_factory=histogram)

    def summary(self) -> dict[str, float]:
        us = self.latency.get_value_at_percentile
        out = {
            "calls": self.calls,
            "errors": self.errors,
            "rps": self.calls / self.seconds,
            "p50_us": us(50),
            "p99_us": us(99),
        }
        if self.tokens:
            out["tokens_per_s"] = self.tokens / self.seconds
            out["ttft_p50_us"] = self.first_token.get_value_at_percentile(50)
        return out


def request(model: str) -> pb.GenerateRequest:
    return pb.GenerateRequest(model=model, messages=[pb.Message(role="user", content=PROMPT)])


async def run(
    address: str,
    model: str,
    *,
    streaming: bool,
    concurrency: int,
    seconds: float | None = None,
    calls: int | None = None,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Result:
    """Run for `seconds` or until `calls` calls are done, whichever is given;
    every call sends `metadata` (e.g. an `authorization` header)."""
    result = Result()
    msg = request(model)
    channels = [grpc.aio.insecure_channel(address) for _ in range(min(concurrency, 4))]
    stubs = [router_pb2_grpc.RouterStub(c) for c in channels]
    budget = [calls if calls is not None else 1 << 62]
    stop_at = time.perf_counter() + (seconds if seconds is not None else 1e9)

    async def unary(stub: router_pb2_grpc.RouterStub) -> None:
        await stub.Generate(msg, metadata=metadata)

    async def stream(stub: router_pb2_grpc.RouterStub) -> None:
        started = time.perf_counter_ns()
        first = True
        async for chunk in stub.GenerateStream(msg, metadata=metadata):
            if first:
                result.first_token.record_value((time.perf_counter_ns() - started) // 1000)
                first = False
            if chunk.delta:
                result.tokens += 1

    call: Callable[[router_pb2_grpc.RouterStub], Awaitable[None]] = stream if streaming else unary

    async def caller(stub: router_pb2_grpc.RouterStub) -> None:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            started = time.perf_counter_ns()
            try:
                await call(stub)
            except grpc.aio.AioRpcError:
                result.errors += 1
                continue
            result.latency.record_value((time.perf_counter_ns() - started) // 1000)
            result.calls += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(stubs[i % len(stubs)]) for i in range(concurrency)))
    result.seconds = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    return result
