"""The baseline: a bare grpc.aio Router server with the gateway's message shapes
and none of its work (no validation, routing, provider, metrics)."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import sys
from collections.abc import AsyncIterator

import grpc
import uvloop

from gateway.pb import router_pb2 as pb
from gateway.pb import router_pb2_grpc

TOKENS = 20


class Bare(router_pb2_grpc.RouterServicer):
    async def Generate(self, request: pb.GenerateRequest, context: object) -> pb.GenerateResponse:
        words = request.messages[-1].content.split()
        text = " ".join(words[i % len(words)] for i in range(TOKENS))
        return pb.GenerateResponse(
            id="gen-" + secrets.token_hex(12),
            model=request.model,
            deployment="bare",
            text=text,
            finish_reason="stop",
            usage=pb.Usage(input_tokens=len(words), output_tokens=TOKENS, total_tokens=TOKENS + 2),
        )

    async def GenerateStream(
        self, request: pb.GenerateRequest, context: object
    ) -> AsyncIterator[pb.GenerateChunk]:
        words = request.messages[-1].content.split()
        rid = "gen-" + secrets.token_hex(12)
        for i in range(TOKENS):
            chunk = pb.GenerateChunk(id=rid, delta=(" " if i else "") + words[i % len(words)])
            if i == 0:
                chunk.deployment = "bare"
            yield chunk
        yield pb.GenerateChunk(
            id=rid,
            finish_reason="stop",
            usage=pb.Usage(input_tokens=len(words), output_tokens=TOKENS, total_tokens=TOKENS + 2),
        )


async def main(port: int) -> None:
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServicer_to_server(Bare(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"serving gRPC on 127.0.0.1:{bound}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    uvloop.run(main(parser.parse_args().port))
