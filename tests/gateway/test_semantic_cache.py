"""The semantic cache end to end: hits marked over gRPC (CacheHit, metadata)
and on the OpenAI route (headers), the per-request opt-in header, the
metrics, and warm-up from a JSONL file (the CLI's path and at start-up).
Prompts are embedded by tests/router/test_semantic_cache.py's fake embedder,
whose similarities the tests choose."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import httpx2 as httpx
from prometheus_client import REGISTRY

from gateway import cache_warm
from gateway.cache import METRICS
from gateway.cli import main
from gateway.pb import router_pb2 as pb
from gateway.pb import router_pb2_grpc
from gateway.rest.openai import generate_request
from gateway.router.wire import request_from_pb
from gateway.server import Gateway
from tests.conftest import StartGateway
from tests.router.test_semantic_cache import PARAPHRASE, VECTORS, FakeEmbedder

ORIGINAL = "What is the capital of France?"
COLD = pb.GenerationParams(temperature=0.0)
MODELS: dict[str, Any] = {
    "smart": {
        "deployments": [{"name": "smart-a", "provider": "mock", "model": "echo?tokens=4"}],
        "cache": {"semantic": True},
    },
    "plain": {"deployments": [{"name": "plain-a", "provider": "mock", "model": "echo?tokens=4"}]},
}


def ask(model: str, text: str, **fields: Any) -> pb.GenerateRequest:
    messages = [
        pb.Message(role="system", content="be brief"),
        pb.Message(role="user", content=text),
    ]
    return pb.GenerateRequest(model=model, messages=messages, params=COLD, **fields)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def started(start_gateway: StartGateway, **cache: Any) -> Gateway:
    gateway = await start_gateway(models=MODELS, top={"cache": {"enabled": True, **cache}})
    gateway.live.use_embedder(FakeEmbedder(VECTORS), "fake")
    return gateway


async def test_a_paraphrase_is_a_marked_semantic_hit_over_grpc(start_gateway: StartGateway) -> None:
    gateway = await started(start_gateway)
    hits = sample("infergate_cache_lookups_total", kind="semantic", result="hit")
    similar = sample("infergate_cache_hit_similarity_count")
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)  # type: ignore[no-untyped-call]
        first = await stub.Generate(ask("smart", ORIGINAL))
        await gateway.router.flush()
        call = stub.Generate(ask("smart", PARAPHRASE))
        second = await call
        metadata = dict(await call.initial_metadata())
        streamed = [c async for c in stub.GenerateStream(ask("smart", PARAPHRASE))]
    assert not first.cached and second.cached and second.text == first.text
    assert (second.cache_hit.kind, second.cache_hit.request_id) == ("semantic", first.id)
    assert abs(second.cache_hit.similarity - 0.97) < 1e-3
    assert metadata["x-infergate-cache"] == "hit"
    assert metadata["x-infergate-cache-kind"] == "semantic"
    assert metadata["x-infergate-cache-source"] == first.id
    assert float(metadata["x-infergate-cache-similarity"]) == round(second.cache_hit.similarity, 4)
    # The semantic hit was copied under the paraphrase's own key: now an exact hit,
    # still naming the request whose answer it is.
    assert streamed[0].cached and streamed[0].cache_hit.kind == "exact"
    assert streamed[0].cache_hit.request_id == first.id
    assert "".join(c.delta for c in streamed) == first.text
    assert sample("infergate_cache_lookups_total", kind="semantic", result="hit") - hits == 1
    assert sample("infergate_cache_hit_similarity_count") - similar == 1
    METRICS.publish(gateway.live)
    assert sample("infergate_cache_bytes", kind="semantic") > 0
    assert sample("infergate_cache_bytes", kind="exact") > 0


async def test_the_openai_route_marks_hits_and_takes_the_opt_in_header(
    start_gateway: StartGateway,
) -> None:
    gateway = await started(start_gateway)
    url = f"http://127.0.0.1:{gateway.http_port}/v1/chat/completions"

    def body(model: str, text: str) -> dict[str, Any]:
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]
        return {"model": model, "messages": messages, "temperature": 0}

    opt_in = {"x-infergate-cache": "semantic"}
    async with httpx.AsyncClient(timeout=10) as client:
        await client.post(url, json=body("plain", ORIGINAL), headers=opt_in)
        await gateway.router.flush()
        with_header = await client.post(url, json=body("plain", PARAPHRASE), headers=opt_in)
        without = await client.post(url, json=body("plain", "Tell me France's capital."))
    assert without.status_code == with_header.status_code == 200
    # Response metadata comes back as grpc-metadata-* headers, as on every REST route.
    assert "grpc-metadata-x-infergate-cache" not in without.headers  # nobody opted in
    assert with_header.headers["grpc-metadata-x-infergate-cache"] == "hit"
    assert with_header.headers["grpc-metadata-x-infergate-cache-kind"] == "semantic"
    assert with_header.headers["grpc-metadata-x-infergate-cache-source"]


def write_lines(path: Path, *lines: Any) -> Path:
    def encoded(line: Any) -> bytes:
        if isinstance(line, bytes):
            return line
        return (line if isinstance(line, str) else json.dumps(line)).encode()

    path.write_bytes(b"".join(encoded(line) + b"\n" for line in lines))
    return path


def chat_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "smart", "messages": [{"role": "system", "content": "be brief"},
                                           {"role": "user", "content": text}], **extra}  # fmt: skip


async def test_warm_up_fills_the_cache_through_the_gateway(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await started(start_gateway)
    path = write_lines(
        tmp_path / "warm.jsonl",
        chat_body(ORIGINAL, temperature=0),
        "{not json",
        "",
        chat_body("Another question"),  # sampling unset: warming caches it anyway
        {"model": "smart"},
        b'{"model": "smart", "messages": [{"role": "user", "content": "caf\xe9"}]}',
    )
    seen: list[int] = []
    summary = await cache_warm.warm(gateway.address, path, progress=lambda s: seen.append(s.done))
    assert (summary.total, summary.answered, summary.already) == (5, 2, 0)
    assert [number for number, _ in summary.failed] == [2, 5, 6]
    assert "messages" in summary.failed[1][1] and "utf-8" in summary.failed[2][1]
    assert seen == [4, 5]  # after each request sent (the bad lines count from the start)
    await gateway.router.flush()
    again = await cache_warm.warm(gateway.address, path)
    assert (again.answered, again.already) == (0, 2)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)  # type: ignore[no-untyped-call]
        reply = await stub.Generate(ask("smart", PARAPHRASE))
    assert reply.cached and reply.cache_hit.kind == "semantic"


async def test_the_cli_reports_progress_and_a_summary(
    start_gateway: StartGateway, tmp_path: Path, capsys: Any
) -> None:
    gateway = await started(start_gateway)
    path = write_lines(tmp_path / "warm.jsonl", chat_body(ORIGINAL), "[1]")
    code = await asyncio.to_thread(main, ["cache", "warm", str(path), "--address", gateway.address])
    out, err = capsys.readouterr()
    assert code == 1  # a line failed
    assert "1 answered and cached, 0 already cached, 1 failed, of 2" in out
    assert "line 2: not a JSON object" in err
    missing = await asyncio.to_thread(main, ["cache", "warm", str(tmp_path / "nope.jsonl")])
    assert missing == 2


async def test_a_warm_file_is_answered_after_start_up_without_delaying_it(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    slow = {"deployments": [{"name": "slow-a", "provider": "mock",
                             "model": "echo?tokens=4&latency_ms=300"}]}  # fmt: skip
    line = {**chat_body(ORIGINAL), "model": "slow"}
    path = write_lines(tmp_path / "warm.jsonl", line)
    gateway = await start_gateway(
        models={**MODELS, "slow": slow}, top={"cache": {"enabled": True, "warm_file": str(path)}}
    )
    message = generate_request(line)
    message.cache = True  # as warming sends it
    request = request_from_pb(message, "probe")
    assert (await gateway.router.look_up(request)).result == "miss"  # serving, not yet warm
    for _ in range(100):
        await asyncio.sleep(0.05)
        if (found := await gateway.router.look_up(request)).result == "hit":
            break
    assert found.hit is not None and found.hit.kind == "exact"
