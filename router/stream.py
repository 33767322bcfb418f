"""A routed stream: the attempt walk for streams (retries only before the first
chunk; a stalled stream is cut), with the request cache and the sensitive-word
filter around it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import replace
from typing import Protocol

from router import spans
from router.cache import CachedAnswer
from router.errors import ProviderError
from router.filter import SensitiveWords, StreamFilter
from router.plan import Plan
from router.request_cache import CacheHit, Lookup
from router.types import STARTED, Chunk, Request, Response, ToolCall, Usage
from router.walk import Walk, WalkContext, log_plan


class StreamHost(Protocol):
    """What a routed stream uses of its router. A protocol, not the Router
    class, so that this module does not import router.router, which imports it."""

    @property
    def words(self) -> SensitiveWords | None: ...
    @property
    def walk_context(self) -> WalkContext: ...
    def plan(self, request: Request, stream: bool) -> Plan: ...
    def enter(self) -> None: ...
    def leave(self) -> None: ...
    def caches(self, request: Request) -> bool: ...
    async def look_up(self, request: Request) -> Lookup: ...
    def remember(self, found: Lookup, answer: CachedAnswer) -> None: ...
    def log_cache_hit(self, request: Request, hit: CacheHit | None) -> None: ...


def answer(response: Response, request_id: str = "") -> CachedAnswer:
    return CachedAnswer(
        (response.text,), response.finish_reason, response.usage, response.tool_calls, request_id
    )


class RoutedStream:
    """An async iterator of chunks. Once the first chunk has arrived,
    `deployment` names the deployment serving it ("" for a cache hit),
    `cache` says "hit", "miss" or "" (not cacheable), and `hit` which kind
    of hit and whose answer it is."""

    def __init__(self, router: StreamHost, request: Request, deadline: float | None) -> None:
        self.deployment = ""
        self.cache = ""
        self.hit: CacheHit | None = None
        self._announce = False
        self._router = router
        self._request = request
        self._deadline = deadline

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self.chunks()

    def chunks(self, announce: bool = False) -> AsyncGenerator[Chunk, None]:
        """The chunks; close the generator (contextlib.aclosing) to stop early,
        which stops the upstream. With `announce`, `router.types.STARTED` comes
        first, once, as soon as an upstream's stream is known to be good (when
        its provider says so), so the edge can send its headers before the
        first token."""
        self._announce = announce
        if self._router.words is None and not self._router.caches(self._request):
            return self._upstream()
        return self._post_processed()

    async def _post_processed(self) -> AsyncGenerator[Chunk, None]:
        source: AsyncGenerator[Chunk, None]
        router = self._router
        router.enter()  # from the cache lookup to the cache write: a reload waits for it
        try:
            found = await router.look_up(self._request)
            self.cache, self.hit = found.result, found.hit
            if found.answer is not None:
                router.log_cache_hit(self._request, found.hit)
                source = _replay(found.answer.chunks())
            elif found.key is not None:
                source = self._recorded(self._upstream(), found)
            else:
                source = self._upstream()
            if router.words is not None:
                source = _filtered(source, router.words.stream())
            async with contextlib.aclosing(source):
                async for chunk in source:
                    yield chunk
        finally:
            router.leave()

    async def _recorded(
        self, source: AsyncGenerator[Chunk, None], found: Lookup
    ) -> AsyncGenerator[Chunk, None]:
        """Pass chunks through; a stream that completes is remembered."""
        deltas: list[str] = []
        calls: list[ToolCall] = []
        last: Chunk | None = None
        async with contextlib.aclosing(source):
            async for chunk in source:
                if chunk.delta:
                    deltas.append(chunk.delta)
                calls += chunk.tool_calls
                if chunk.finish_reason:
                    last = chunk
                yield chunk
        if last is not None:
            usage = last.usage or Usage()
            request_id = self._request.request_id
            self._router.remember(
                found,
                CachedAnswer(tuple(deltas), last.finish_reason, usage, tuple(calls), request_id),
            )

    async def _upstream(self) -> AsyncGenerator[Chunk, None]:
        router, context = self._router, self._router.walk_context
        with spans.span("infergate.plan"):
            plan = router.plan(self._request, stream=True)
            log_plan(context, self._request, plan)
        retry = plan.retry
        walk = Walk(context, plan, self._deadline, self._request.request_id)
        announce = self._announce
        router.enter()
        try:
            while (deployment := await walk.next()) is not None:
                state = deployment.state
                started = context.clock()
                first_at: float | None = None
                output_tokens = 0
                state.in_flight += 1
                watchdog = context.watchdogs.watchdog()
                try:
                    upstream = deployment.provider.stream(self._request, self._deadline)
                    async with contextlib.aclosing(upstream):
                        while True:
                            waiting = first_at is None
                            limit = (
                                retry.attempt_timeout_s if waiting else retry.inter_token_timeout_s
                            )
                            # The first chunk's limit runs from the attempt's start,
                            # across a STARTED from the provider.
                            left = max(0.0, started + limit - context.clock()) if waiting else limit
                            watchdog.arm(walk.budget(left))
                            try:
                                with spans.current(walk.span):
                                    chunk = await anext(upstream)
                            except StopAsyncIteration:
                                break
                            except asyncio.CancelledError:
                                if not watchdog.expired():
                                    raise
                                if waiting:
                                    raise walk.timed_out("no first chunk", limit) from None
                                raise walk.stalled(limit) from None
                            finally:
                                watchdog.disarm()
                            if chunk is STARTED:  # not an answer's chunk: no first_at
                                if announce:
                                    announce = False  # once, whichever attempt
                                    yield chunk
                                continue
                            if waiting:
                                first_at = context.clock()
                                self.deployment = deployment.name
                            if chunk.usage is not None:
                                output_tokens = chunk.usage.output_tokens
                            yield chunk
                except ProviderError as error:
                    walk.failed(deployment, error)
                    if first_at is not None:  # the client has tokens: say it failed
                        raise
                    continue
                except BaseException:
                    walk.released(deployment)
                    raise
                else:
                    walk.succeeded(deployment, started, first_at, output_tokens)
                    return
                finally:
                    watchdog.disarm()
                    state.in_flight -= 1
            raise walk.exhausted()
        finally:
            router.leave()


async def _replay(chunks: Sequence[Chunk]) -> AsyncGenerator[Chunk, None]:
    for chunk in chunks:
        yield chunk


async def _filtered(
    source: AsyncGenerator[Chunk, None], words: StreamFilter
) -> AsyncGenerator[Chunk, None]:
    """Chunks with sensitive terms masked, or cut at the first one ("block":
    the stream then ends with finish reason content_filter). Text that may be
    the start of a term is held back until the next chunk tells."""
    async with contextlib.aclosing(source):
        async for chunk in source:
            if chunk is STARTED:
                yield chunk
                continue
            text = words.feed(chunk.delta) if chunk.delta else ""
            if words.blocked:
                await source.aclose()  # stop the upstream now, not after the client's write
                yield Chunk(delta=text, finish_reason="content_filter")
                return
            if chunk.finish_reason or chunk.usage is not None:
                text += words.finish()
            if text or chunk.tool_calls or chunk.finish_reason or chunk.usage is not None:
                yield replace(chunk, delta=text) if text != chunk.delta else chunk
    tail = words.finish()
    if tail:
        yield Chunk(delta=tail)
