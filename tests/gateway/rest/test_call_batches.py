"""How the REST shim hands a server-streaming call's messages to the response
(gateway/rest/call.py `Calls.batches`): the messages a handler yields back to
back (one upstream read's worth) go out as one batch, one HTTP write for all;
initial metadata sent before any message comes first, as STARTED.

Batching is what keeps a burst cheap: written one by one, the same streams
cost 34-44% more gateway CPU each at 64 concurrent calls, and with only the
first message written on its own 18-24% more (bench/RESULTS.md, issue 15,
"what did not help")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gateway.pb import router_pb2, router_pb2_grpc
from gateway.rest.call import STARTED, Calls
from gateway.rest.context import RestContext
from gateway.rest.methods import GENERATE_STREAM, MethodTable


class _Router(router_pb2_grpc.RouterServicer):
    def __init__(self, script: Any) -> None:
        self.script = script

    def GenerateStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        return self.script(request, context)  # type: ignore[no-any-return]


async def _batches(script: Any) -> list[Any]:
    service = router_pb2.DESCRIPTOR.services_by_name["Router"]
    calls = Calls(MethodTable([(service, _Router(script))]), [])
    context = RestContext((), None, "ipv4:127.0.0.1:1")
    batches = calls.batches(GENERATE_STREAM, router_pb2.GenerateRequest(), context)
    return [batch if batch is STARTED else [m.delta for m in batch] async for batch in batches]


async def test_messages_yielded_back_to_back_go_out_as_one_batch() -> None:
    async def script(request: Any, context: Any) -> AsyncIterator[Any]:
        for text in ("a", "b", "c", "d"):
            yield router_pb2.GenerateChunk(delta=text)
            if text == "b":
                await asyncio.sleep(0.002)  # the upstream's next read

    assert await _batches(script) == [["a", "b"], ["c", "d"]]


async def test_initial_metadata_before_any_message_comes_first_as_started() -> None:
    async def script(request: Any, context: Any) -> AsyncIterator[Any]:
        await context.send_initial_metadata(())
        await asyncio.sleep(0.002)  # the upstream's first token
        yield router_pb2.GenerateChunk(delta="a")

    assert await _batches(script) == [STARTED, ["a"]]
