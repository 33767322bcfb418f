"""Cache warm-up: requests from a JSONL file answered through a running
gateway's Router.Generate — the normal path, with auth, limits, usage and
spend — so that their answers are in the cache before users ask.
`infergate cache warm FILE` runs it from a shell; `cache.warm_file` runs it
once the gateway serves (readiness does not wait for it).

Each line is an OpenAI chat completion body (`model`, `messages`,
`temperature`, …, as POST /v1/chat/completions takes it), optionally with
`"semantic_cache": true` so that its prompt is also matched by meaning. Every
request is sent with `cache: true`, so each answer is stored; but a request
is only looked up exactly when it is deterministic (`temperature: 0`) or asks
for the cache itself, so lines should say `temperature: 0` to serve the usual
client. Answers are cached for the tenant of the key that sends them. A line
that cannot be read is reported with its number and skipped; the rest still
run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from gateway.pb import router_pb2 as pb
from gateway.pb import router_pb2_grpc
from gateway.rest.compat import CompatError
from gateway.rest.openai import generate_request

Progress = Callable[["WarmSummary"], None]


@dataclass
class WarmSummary:
    total: int = 0  # requests read
    answered: int = 0  # answered by an upstream, and so now cached
    already: int = 0  # answered from the cache
    failed: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return self.answered + self.already + len(self.failed)

    def line(self) -> str:
        return (
            f"{self.answered} answered and cached, {self.already} already cached, "
            f"{len(self.failed)} failed, of {self.total} in {self.seconds:.1f}s"
        )


def read_requests(path: Path) -> Iterator[tuple[int, pb.GenerateRequest | str]]:
    """(line number, request or why the line cannot be one), blank lines skipped."""
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                body = json.loads(raw.decode("utf-8"))
                if not isinstance(body, dict):
                    raise ValueError("not a JSON object")
                message = generate_request(body)
            except (ValueError, CompatError) as exc:
                yield number, str(exc)
                continue
            message.cache = True
            yield number, message


async def warm(
    address: str,
    path: Path,
    key: str = "",
    concurrency: int = 4,
    timeout_s: float = 120.0,
    progress: Progress | None = None,
) -> WarmSummary:
    """Send every request of `path` to the gateway at `address`, `concurrency`
    at a time; `progress` is called after each. Cancelling stops the sending
    (answers already stored stay cached)."""
    summary = WarmSummary()
    started = time.monotonic()
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    work: asyncio.Queue[tuple[int, pb.GenerateRequest]] = asyncio.Queue()
    for number, request in await asyncio.to_thread(list, read_requests(path)):
        summary.total += 1
        if isinstance(request, str):
            summary.failed.append((number, request))
        else:
            work.put_nowait((number, request))

    async with grpc.aio.insecure_channel(address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)  # type: ignore[no-untyped-call]

        async def sender() -> None:
            while not work.empty():
                number, request = work.get_nowait()
                try:
                    reply = await stub.Generate(request, metadata=metadata, timeout=timeout_s)
                except grpc.aio.AioRpcError as exc:
                    summary.failed.append((number, f"{exc.code().name}: {exc.details()}"))
                else:
                    if reply.cached:
                        summary.already += 1
                    else:
                        summary.answered += 1
                summary.seconds = time.monotonic() - started
                if progress is not None:
                    progress(summary)

        await asyncio.gather(*(sender() for _ in range(max(1, concurrency))))
    summary.failed.sort()
    summary.seconds = time.monotonic() - started
    return summary
