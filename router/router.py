"""The router: model alias -> a plan (ordered deployments, and those skipped and
why) -> bounded attempts inside the caller's deadline -> the first that works.

Planning is synchronous and in-process; only provider calls and backoff await.
Retries happen only before a stream's first chunk: after it, a failure is
re-raised so the client sees an explicit error, never a silently short answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from router import strategy as strategies
from router.cache import CachedAnswer, ResponseCache, cache_key
from router.config import (
    ConfigError,
    DeploymentConfig,
    ModelConfig,
    RetryConfig,
    RouterConfig,
    RoutingConfig,
)
from router.errors import (
    AllProvidersFailed,
    ErrorKind,
    InvalidRequest,
    ModelNotFound,
    ProviderError,
)
from router.filter import SensitiveWords, StreamFilter
from router.provider import Provider
from router.state import DeploymentState
from router.types import Chunk, Embeddings, Request, Response, ToolCall, Usage
from router.validate import validate
from router.watchdog import Watchdogs

ProviderFactory = Callable[[DeploymentConfig], Provider]
Clock = Callable[[], float]
log = logging.getLogger("infergate.routing")


@dataclass(slots=True)
class Deployment:
    """One upstream of an alias in one config snapshot."""

    config: DeploymentConfig
    provider: Provider
    state: DeploymentState

    @property
    def name(self) -> str:
        return self.config.name


class Model:
    """An alias: its deployments, strategies and override rules."""

    def __init__(
        self,
        alias: str,
        config: ModelConfig,
        deployments: list[Deployment],
        routing: RoutingConfig,
        rng: random.Random,
    ) -> None:
        self.alias = alias
        self.config = config
        self.deployments = deployments
        self._by_name = {d.name: i for i, d in enumerate(deployments)}
        self._states = [d.state for d in deployments]
        self._clock = deployments[0].state.clock
        weights = [d.config.weight for d in deployments]
        names = {config.strategy} | {
            r.then.strategy
            for r in config.routing_strategy.override
            if r.then.strategy != "specific_provider"
        }
        self._strategies = {
            name: strategies.build(name, weights, routing.exploration, rng) for name in names
        }

    def index(self, name: str) -> int:
        try:
            return self._by_name[name]
        except KeyError:
            raise InvalidRequest(
                "deployment", f"model {self.alias!r} has no deployment {name!r}"
            ) from None

    def plan(
        self, request: Request, stream: bool, advance: bool, rules: bool = True
    ) -> tuple[str, list[Deployment], list[tuple[Deployment, str]]]:
        """(strategy, deployments to try in order, deployments skipped with why)."""
        name = self.config.strategy
        pinned: int | None = None
        if request.deployment:
            name, pinned = "manual", self.index(request.deployment)
        elif rules:
            for rule in self.config.routing_strategy.override:
                if all(request.metadata.get(k) == v for k, v in rule.when.items()):
                    name = rule.then.strategy
                    if rule.then.provider:
                        pinned = self.index(rule.then.provider)
                    break
        members = range(len(self.deployments)) if pinned is None else (pinned,)
        states, now = self._states, self._clock()
        usable = [i for i in members if states[i].usable(now)]
        skipped: list[tuple[Deployment, str]] = []
        if len(usable) < len(members):
            kept = set(usable)
            skipped = [(self.deployments[i], states[i].skip_reason()) for i in members
                       if i not in kept]  # fmt: skip
        if pinned is None and usable:
            usable = self._strategies[name].order(usable, self._states, stream, advance)
        return name, [self.deployments[i] for i in usable], skipped


@dataclass(frozen=True, slots=True)
class Plan:
    alias: str
    strategy: str
    candidates: list[Deployment]
    skipped: list[tuple[Deployment, str]]
    retry: RetryConfig


@dataclass(frozen=True, slots=True)
class Candidate:
    deployment: str
    provider: str
    skip_reason: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """A dry run's answer: what would serve the request and what it would be sent."""

    model: str
    strategy: str
    deployment: str
    provider: str
    candidates: tuple[Candidate, ...]
    upstream_request: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Routed:
    response: Response
    deployment: str  # "" for an answer from the cache
    cache: str = ""  # "hit", "miss", or "" when the request is not cacheable


@dataclass(frozen=True, slots=True)
class RoutedEmbeddings:
    embeddings: Embeddings
    deployment: str


def backoff(round_: int, retry: RetryConfig, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, base * 2^round))."""
    return rng.uniform(0.0, min(retry.backoff_max_s, retry.backoff_base_s * 2.0**round_))


class Router:
    """Serves requests for the aliases of one config snapshot.

    Pass the previous snapshot's Router as `previous` (hot reload): deployments
    that keep their name, provider, model and options keep their state
    (breaker, latencies) and their provider client; `retired` lists the
    providers the new snapshot no longer uses, to close once the old one is idle.
    """

    def __init__(
        self,
        config: RouterConfig,
        factory: ProviderFactory,
        *,
        previous: Router | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        self.config = config
        self.cache = cache if config.cache.enabled else None
        self.words = SensitiveWords(config.filter) if config.filter else None
        self._writes: set[asyncio.Task[None]] = set()
        self.clock = clock
        self.rng = rng or random.Random()
        self.debug = config.routing.debug or os.environ.get("INFERGATE_ROUTING_DEBUG", "") in (
            "1",
            "true",
        )
        self.watchdogs: Watchdogs = previous.watchdogs if previous else Watchdogs()
        self.active = 0  # calls running on this snapshot
        self._idle = asyncio.Event()
        self._idle.set()
        old = {
            (m.alias, d.name): d
            for m in (previous.models.values() if previous else ())
            for d in m.deployments
        }
        kept: set[int] = set()
        self.models: dict[str, Model] = {}
        for alias, model_config in config.models.items():
            deployments = []
            for i, dc in enumerate(model_config.deployments):
                before = old.get((alias, dc.name))
                if before is not None and _same_upstream(before.config, dc):
                    before.state.breaker.configure(config.breaker_for(alias))
                    deployments.append(Deployment(dc, before.provider, before.state))
                    kept.add(id(before.provider))
                    continue
                state = DeploymentState(config.breaker_for(alias), clock, config.routing.ewma_alpha)
                provider = _build(factory, dc, f"models.{alias}.deployments.{i}")
                deployments.append(Deployment(dc, provider, state))
            self.models[alias] = Model(alias, model_config, deployments, config.routing, self.rng)
        self.retired = [d.provider for d in old.values() if id(d.provider) not in kept]

    def enter(self) -> None:
        self.active += 1
        self._idle.clear()

    def leave(self) -> None:
        self.active -= 1
        if not self.active:
            self._idle.set()

    async def idle(self) -> None:
        """Return once no call is running on this snapshot."""
        await self._idle.wait()

    def model(self, alias: str) -> Model:
        try:
            return self.models[alias]
        except KeyError:
            raise ModelNotFound(alias) from None

    def plan(self, request: Request, stream: bool, advance: bool = True) -> Plan:
        """The alias's deployments in the order to try them, then its fallbacks'
        (whose own balancers do not advance); a manual or pinned choice gets no
        fallbacks."""
        model = self.model(request.model)
        name, candidates, skipped = model.plan(request, stream, advance)
        if request.deployment == "" and name != "specific_provider":
            for alias in model.config.fallbacks:
                _, more, more_skipped = self.models[alias].plan(request, stream, False, rules=False)
                candidates += more
                skipped += more_skipped
        return Plan(model.alias, name, candidates, skipped, self.config.retry_for(model.alias))

    def route(self, request: Request) -> Decision:
        """Dry run: what the next real call would do, with no upstream call and
        no change to any strategy's state."""
        validate(request)
        plan = self.plan(request, stream=False, advance=False)
        chosen = plan.candidates[0] if plan.candidates else None
        return Decision(
            model=plan.alias,
            strategy=plan.strategy,
            deployment=chosen.name if chosen else "",
            provider=chosen.config.provider if chosen else "",
            candidates=tuple(
                [Candidate(d.name, d.config.provider) for d in plan.candidates]
                + [Candidate(d.name, d.config.provider, why) for d, why in plan.skipped]
            ),
            upstream_request=chosen.provider.upstream_request(request) if chosen else {},
        )

    async def generate(self, request: Request, deadline: float | None = None) -> Routed:
        validate(request)
        cache, key = self.cache, None
        if cache is not None and (key := cache_key(request)) is not None:
            hit = await cache.get(key)
            if hit is not None:
                answer = Response(hit.text, hit.finish_reason, hit.usage, hit.tool_calls)
                return Routed(self._filtered(answer), "", "hit")
        plan = self.plan(request, stream=False)
        self._log_plan(request, plan)
        walk = Walk(self, plan, deadline)
        self.enter()
        try:
            watchdog = self.watchdogs.watchdog()
            while (deployment := await walk.next()) is not None:
                state = deployment.state
                started = self.clock()
                state.in_flight += 1
                watchdog.arm(walk.budget(plan.retry.attempt_timeout_s))
                try:
                    response = await deployment.provider.generate(request, deadline)
                except ProviderError as exc:
                    error = exc
                except asyncio.CancelledError:
                    if not watchdog.expired():
                        state.breaker.release()
                        raise
                    error = walk.timed_out("no answer", plan.retry.attempt_timeout_s)
                except BaseException:
                    state.breaker.release()
                    raise
                else:
                    state.succeeded(started, None, response.usage.output_tokens)
                    if key is not None:
                        self.remember(key, _answer(response))
                    return Routed(self._filtered(response), deployment.name, "miss" if key else "")
                finally:
                    watchdog.disarm()
                    state.in_flight -= 1
                walk.failed(deployment, error)
            raise walk.exhausted()
        finally:
            self.leave()

    def stream(self, request: Request, deadline: float | None = None) -> RoutedStream:
        validate(request)
        model = self.model(request.model)
        if request.deployment:
            model.index(request.deployment)  # an unknown name fails now, not mid-stream
        key = cache_key(request) if self.cache is not None else None
        return RoutedStream(self, request, deadline, key)

    def remember(self, key: str, answer: CachedAnswer) -> None:
        """Store an answer in the background: a slow cache never delays a reply."""
        assert self.cache is not None
        task = asyncio.create_task(self.cache.put(key, answer))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _filtered(self, response: Response) -> Response:
        if self.words is None:
            return response
        text, blocked = self.words.apply(response.text)
        finish = "content_filter" if blocked else response.finish_reason
        return replace(response, text=text, finish_reason=finish)

    async def embed(self, model: str, texts: Sequence[str]) -> RoutedEmbeddings:
        if not model:
            raise InvalidRequest("model", "is required")
        if not texts:
            raise InvalidRequest("inputs", "must not be empty")
        plan = self.plan(Request(model, ()), stream=False)
        walk = Walk(self, plan, None)
        watchdog = self.watchdogs.watchdog()
        while (deployment := await walk.next()) is not None:
            state = deployment.state
            started = self.clock()
            state.in_flight += 1
            watchdog.arm(walk.budget(plan.retry.attempt_timeout_s))
            try:
                result = await deployment.provider.embed(texts)
            except ProviderError as exc:
                error = exc
            except asyncio.CancelledError:
                if not watchdog.expired():
                    state.breaker.release()
                    raise
                error = walk.timed_out("no answer", plan.retry.attempt_timeout_s)
            except BaseException:
                state.breaker.release()
                raise
            else:
                state.succeeded(started, None, 0)
                return RoutedEmbeddings(result, deployment.name)
            finally:
                watchdog.disarm()
                state.in_flight -= 1
            walk.failed(deployment, error)
        raise walk.exhausted()

    async def probe(self, limit_s: float) -> None:
        """Run every deployment's probe() once, concurrently; record the verdicts."""

        async def one(deployment: Deployment) -> None:
            state = deployment.state
            try:
                async with asyncio.timeout(limit_s):
                    await deployment.provider.probe()
            except TimeoutError:
                state.probe_error = f"no answer within {limit_s:g}s"
            except ProviderError as exc:
                state.probe_error = f"{exc.kind}: {exc}"
            except Exception as exc:  # a provider bug must not stop the probing
                state.probe_error = f"probe raised {type(exc).__name__}: {exc}"
            else:
                state.probe_error = ""
            state.last_probe_time = time.time()

        await asyncio.gather(*(one(d) for m in self.models.values() for d in m.deployments))

    async def aclose(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        for model in self.models.values():
            for deployment in model.deployments:
                await deployment.provider.aclose()

    def _log_plan(self, request: Request, plan: Plan) -> None:
        if not self.debug:
            return
        candidates = [{"deployment": d.name, "skip": ""} for d in plan.candidates]
        candidates += [{"deployment": d.name, "skip": why} for d, why in plan.skipped]
        line = {
            "request_id": request.request_id,
            "alias": plan.alias,
            "strategy": plan.strategy,
            "candidates": candidates,
            "chosen": plan.candidates[0].name if plan.candidates else None,
        }
        log.info("ROUTING_DEBUG %s", json.dumps(line, separators=(",", ":")))


def _same_upstream(a: DeploymentConfig, b: DeploymentConfig) -> bool:
    return (a.provider, a.model, a.options) == (b.provider, b.model, b.options)


def _build(factory: ProviderFactory, config: DeploymentConfig, where: str) -> Provider:
    try:
        return factory(config)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


class Walk:
    """The attempts of one call: the plan's candidates, then up to `retries`
    more rounds after a full-jitter backoff, skipping deployments that became
    unusable, never past the deadline."""

    def __init__(self, router: Router, plan: Plan, deadline: float | None) -> None:
        self._router = router
        self._plan = plan
        self._deadline = deadline
        self._round = 0
        self._next = 0
        self.attempts: list[tuple[str, ProviderError]] = []
        self._skipped = {d.name: why for d, why in plan.skipped}
        self._retryable = True

    def budget(self, limit: float) -> float:
        """Seconds an attempt step may take: `limit`, cut to the deadline."""
        if self._deadline is None:
            return limit
        return max(0.0, min(limit, self._deadline - self._router.clock()))

    def timed_out(self, what: str, limit: float) -> ProviderError:
        """The error for a step that ran out of time: its own limit, or the deadline."""
        if self._deadline is not None and self._router.clock() >= self._deadline:
            return ProviderError(ErrorKind.TIMEOUT, f"{what}: the caller's deadline passed")
        return ProviderError(ErrorKind.TIMEOUT, f"{what} within {limit:g}s")

    def stalled(self, limit: float) -> ProviderError:
        """A started stream went quiet: cut it (the caller's deadline, if that
        is what passed, says so instead)."""
        if self._deadline is not None and self._router.clock() >= self._deadline:
            return self.timed_out("stream stalled", limit)
        return ProviderError(ErrorKind.INTERRUPTED, f"stream stalled: no chunk for {limit:g}s")

    async def next(self) -> Deployment | None:
        plan, clock = self._plan, self._router.clock
        while self._retryable:
            if self._next == len(plan.candidates):
                self._round += 1
                self._next = 0
                if self._round > plan.retry.retries or not plan.candidates:
                    return None
                if not await self._pause():
                    return None
            deployment = plan.candidates[self._next]
            self._next += 1
            if self._deadline is not None and clock() >= self._deadline:
                return None
            why = deployment.state.skip_reason()
            if why or not deployment.state.breaker.acquire():
                self._skipped[deployment.name] = why or "circuit half-open: trial calls in flight"
                continue
            return deployment
        return None

    def failed(self, deployment: Deployment, error: ProviderError) -> None:
        deployment.state.failed(error)
        self.attempts.append((deployment.name, error))
        self._retryable = error.retryable
        if self._router.debug:
            log.info(
                "ROUTING_DEBUG %s",
                json.dumps(
                    {"alias": self._plan.alias, "failed": deployment.name,
                     "kind": str(error.kind), "error": str(error)},
                    separators=(",", ":"),
                ),
            )  # fmt: skip

    def exhausted(self) -> AllProvidersFailed:
        tried = {name for name, _ in self.attempts}
        skipped = [(n, why) for n, why in self._skipped.items() if n not in tried]
        return AllProvidersFailed(self._plan.alias, self.attempts, skipped)

    async def _pause(self) -> bool:
        """Back off before another round; False when that would pass the deadline,
        or when every candidate is rate limited for longer than backoff_max_s."""
        retry, clock = self._plan.retry, self._router.clock
        delay = backoff(self._round - 1, retry, self._router.rng)
        now = clock()
        waits = [d.state.rate_limited_until - now for d in self._plan.candidates]
        if all(w > 0 for w in waits):
            if min(waits) > retry.backoff_max_s:
                return False
            delay = max(delay, min(waits))
        if self._deadline is not None and now + delay >= self._deadline:
            return False
        await asyncio.sleep(delay)
        return True


class RoutedStream:
    """An async iterator of chunks. Once the first chunk has arrived,
    `deployment` names the deployment serving it ("" for a cache hit) and
    `cache` says "hit", "miss" or "" (not cacheable)."""

    def __init__(
        self, router: Router, request: Request, deadline: float | None, key: str | None
    ) -> None:
        self.deployment = ""
        self.cache = "" if key is None else "miss"
        self._router = router
        self._request = request
        self._deadline = deadline
        self._key = key

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self.chunks()

    def chunks(self) -> AsyncGenerator[Chunk, None]:
        """The chunks; close the generator (contextlib.aclosing) to stop early,
        which stops the upstream."""
        if self._key is None and self._router.words is None:
            return self._upstream()
        return self._post_processed()

    async def _post_processed(self) -> AsyncGenerator[Chunk, None]:
        source: AsyncGenerator[Chunk, None]
        cache, key = self._router.cache, self._key
        hit = await cache.get(key) if cache is not None and key is not None else None
        if hit is not None:
            self.cache = "hit"
            source = _replay(hit.chunks())
        elif self._key is not None:
            source = self._recorded(self._upstream(), self._key)
        else:
            source = self._upstream()
        if self._router.words is not None:
            source = _filtered(source, self._router.words.stream())
        async with contextlib.aclosing(source):
            async for chunk in source:
                yield chunk

    async def _recorded(
        self, source: AsyncGenerator[Chunk, None], key: str
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
            self._router.remember(
                key, CachedAnswer(tuple(deltas), last.finish_reason, usage, tuple(calls))
            )

    async def _upstream(self) -> AsyncGenerator[Chunk, None]:
        router = self._router
        plan = router.plan(self._request, stream=True)
        router._log_plan(self._request, plan)
        retry = plan.retry
        walk = Walk(router, plan, self._deadline)
        router.enter()
        try:
            while (deployment := await walk.next()) is not None:
                state = deployment.state
                started = router.clock()
                first_at: float | None = None
                output_tokens = 0
                state.in_flight += 1
                watchdog = router.watchdogs.watchdog()
                try:
                    upstream = deployment.provider.stream(self._request, self._deadline)
                    async with contextlib.aclosing(upstream):
                        while True:
                            waiting = first_at is None
                            limit = (
                                retry.attempt_timeout_s if waiting else retry.inter_token_timeout_s
                            )
                            watchdog.arm(walk.budget(limit))
                            try:
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
                            if waiting:
                                first_at = router.clock()
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
                    state.breaker.release()
                    raise
                else:
                    state.succeeded(started, first_at, output_tokens)
                    return
                finally:
                    watchdog.disarm()
                    state.in_flight -= 1
            raise walk.exhausted()
        finally:
            router.leave()


def _answer(response: Response) -> CachedAnswer:
    return CachedAnswer(
        (response.text,), response.finish_reason, response.usage, response.tool_calls
    )


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
            text = words.feed(chunk.delta) if chunk.delta else ""
            if words.blocked:
                yield Chunk(delta=text, finish_reason="content_filter")
                return
            if chunk.finish_reason or chunk.usage is not None:
                text += words.finish()
            if text or chunk.tool_calls or chunk.finish_reason or chunk.usage is not None:
                yield replace(chunk, delta=text) if text != chunk.delta else chunk
    tail = words.finish()
    if tail:
        yield Chunk(delta=tail)
