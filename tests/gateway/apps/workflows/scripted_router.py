"""A Router stand-in for node tests that need chosen replies: each call gets
the next scripted reply (or `reply(request)`), after `delay(request)` seconds.
It records every request and the most calls it had in flight at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

from gateway.apps.workflows.nodes.base import Services
from router.types import Chunk, Request, Usage
from tests.gateway.apps.workflows.helpers import FixedRetriever


class ScriptedRouter:
    def __init__(
        self,
        replies: Sequence[str] | Callable[[Request], str],
        delay: Callable[[Request], float] = lambda request: 0.0,
    ) -> None:
        self.replies = replies
        self.delay = delay
        self.requests: list[Request] = []
        self.active = 0
        self.peak = 0
        self.cancelled = 0

    def stream(self, request: Request, deadline: float | None = None) -> ScriptedStream:
        self.requests.append(request)
        return ScriptedStream(self, request)

    def answer(self, request: Request) -> str:
        if callable(self.replies):
            return self.replies(request)
        return self.replies[len(self.requests) - 1]


class ScriptedStream:
    def __init__(self, router: ScriptedRouter, request: Request) -> None:
        self.router = router
        self.request = request
        self.deployment = ""

    async def chunks(self) -> AsyncGenerator[Chunk, None]:
        router = self.router
        router.active += 1
        router.peak = max(router.peak, router.active)
        try:
            await asyncio.sleep(router.delay(self.request))
            text = router.answer(self.request)  # a reply function may raise a RouterError
            self.deployment = "scripted-a"
            yield Chunk(delta=text)
            words = sum(len(m.text().split()) for m in self.request.messages)
            yield Chunk(finish_reason="stop", usage=Usage(words, len(text.split())))
        except asyncio.CancelledError:
            router.cancelled += 1
            raise
        finally:
            router.active -= 1


def scripted_services(router: ScriptedRouter, **kw: Any) -> Services:
    uses: list[Any] = []
    s = Services(lambda: router, FixedRetriever(), on_model_call=uses.append, **kw)  # type: ignore[arg-type, return-value]
    s.uses = uses  # type: ignore[attr-defined]
    return s
