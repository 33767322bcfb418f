"""The router: model alias -> a plan (ordered deployments, and those skipped and
why) -> bounded attempts inside the caller's deadline -> the first that works.

Planning is synchronous and in-process; only provider calls and backoff await.
Retries happen only before a stream's first chunk: after it, a failure is
re-raised so the client sees an explicit error, never a silently short answer.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from router import spans
from router.cache import CachedAnswer
from router.config import ConfigError, DeploymentConfig, RouterConfig
from router.errors import InvalidRequest, ModelNotFound, ProviderError
from router.filter import SensitiveWords
from router.plan import Candidate, Decision, Deployment, Model, Plan
from router.pricing import Price, PriceBook
from router.provider import Provider
from router.request_cache import NOT_CACHED, CacheHit, Lookup, RequestCache, fingerprint
from router.state import DeploymentState
from router.stream import RoutedStream, answer
from router.types import Embeddings, Ranking, Request, Response
from router.validate import validate, validate_rerank
from router.walk import WalkContext, first_success, log_debug, log_plan
from router.watchdog import Watchdogs

_OVER = "estimated cost $"  # router/plan.py's reason for a deployment above the ceiling
T = TypeVar("T")
ProviderFactory = Callable[[DeploymentConfig], Provider]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Routed:
    response: Response
    deployment: str  # "" for an answer from the cache
    cache: str = ""  # "hit", "miss", or "" when the request is not cacheable
    hit: CacheHit | None = None  # for "hit": which kind, and whose answer


@dataclass(frozen=True, slots=True)
class RoutedEmbeddings:
    embeddings: Embeddings
    deployment: str


@dataclass(frozen=True, slots=True)
class RoutedRanking:
    ranking: Ranking
    deployment: str


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
        cache: RequestCache | None = None,
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
        self.walk_context = WalkContext(clock, self.rng, self.watchdogs, self.debug)
        self.active = 0  # calls running on this snapshot
        self._idle = asyncio.Event()
        self._idle.set()
        old = {
            (m.alias, d.name): d
            for m in (previous.models.values() if previous else ())
            for d in m.deployments
        }
        kept: set[int] = set()
        carried: list[tuple[DeploymentState, str]] = []  # applied only once all is built
        built: list[Provider] = []
        # Prices set through the API outlive a reload: each snapshot takes its predecessor's.
        self.price_overrides: dict[str, Price] = dict(previous.price_overrides) if previous else {}
        self.prices = PriceBook(config, self.price_overrides)
        self.models: dict[str, Model] = {}
        try:
            for alias, model_config in config.models.items():
                deployments = []
                for i, dc in enumerate(model_config.deployments):
                    before = old.get((alias, dc.name))
                    if before is not None and _same_upstream(before.config, dc):
                        deployments.append(Deployment(dc, before.provider, before.state))
                        kept.add(id(before.provider))
                        carried.append((before.state, alias))
                        continue
                    state = DeploymentState(
                        config.breaker_for(alias), clock, config.routing.ewma_alpha
                    )
                    provider = _build(factory, dc, f"models.{alias}.deployments.{i}")
                    built.append(provider)
                    deployments.append(Deployment(dc, provider, state))
                prices = [self.prices.price(alias, d.name) for d in deployments]
                self.models[alias] = Model(
                    alias, model_config, deployments, config.routing, self.rng, prices
                )
        except ConfigError as exc:
            raise ConfigError(str(exc), built) from exc
        for state, alias in carried:  # the live state changes only for a config that is used
            if state.breaker.config != config.breaker_for(alias):
                state.breaker.configure(config.breaker_for(alias))
            state.alpha = config.routing.ewma_alpha
        self.retired = [d.provider for d in old.values() if id(d.provider) not in kept]
        self.scopes = self._scopes()

    def _scopes(self) -> dict[str, str]:
        """Each alias's cache scope: a fingerprint of what answers it (its and
        its fallbacks' deployments, upstream models, options and prices)."""

        def parts(alias: str) -> list[object]:
            model = self.models[alias]
            return [
                (d.name, d.config.provider, d.config.model, d.config.options, price)
                for d, price in zip(model.deployments, model.prices, strict=True)
            ]

        return {
            alias: fingerprint([parts(a) for a in (alias, *m.config.fallbacks)])
            for alias, m in self.models.items()
        }

    def use_prices(self, overrides: Mapping[str, Price]) -> None:
        """Apply the prices set through the API (deployment name -> price) over
        the config's, for pricing and cost-aware routing alike; later
        snapshots keep them. Synchronous: no call sees half of a change."""
        if overrides == self.price_overrides:
            return
        self.price_overrides = dict(overrides)
        self.prices = PriceBook(self.config, self.price_overrides)
        for alias, model in self.models.items():
            model.prices = [self.prices.price(alias, d.name) for d in model.deployments]
        self.scopes = self._scopes()
        if self.cache is not None:
            self.cache.retain(self.scopes.values())

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
        if not candidates and skipped and all(why.startswith(_OVER) for _, why in skipped):
            raise InvalidRequest(
                "max_cost_usd", f"every deployment of {model.alias!r} is estimated above the "
                f"cost ceiling: {'; '.join(f'{d.name}: {why}' for d, why in skipped)}",
            )  # fmt: skip
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
            upstream_body=chosen.provider.upstream_body(request) if chosen else b"",
        )

    async def generate(self, request: Request, deadline: float | None = None) -> Routed:
        if not spans.ON:
            return await self._generate(request, deadline)
        with spans.span("infergate.route", {"infergate.alias": request.model}) as span:
            routed = await self._generate(request, deadline)
            span.set_attributes(
                {"infergate.deployment": routed.deployment, "infergate.cache": routed.cache}
            )
            return routed

    async def _generate(self, request: Request, deadline: float | None) -> Routed:
        validate(request)
        self.enter()  # from the cache lookup to the cache write: a reload waits for it
        try:
            found = await self.look_up(request)
            if (hit := found.answer) is not None:
                self.log_cache_hit(request, found.hit)
                cached = Response(hit.text, hit.finish_reason, hit.usage, hit.tool_calls)
                return Routed(self._filtered(cached), "", "hit", found.hit)
            with spans.span("infergate.plan"):
                plan = self.plan(request, stream=False)
                log_plan(self.walk_context, request, plan)
            deployment, response = await first_success(
                self.walk_context,
                plan,
                deadline,
                request.request_id,
                lambda d: d.provider.generate(request, deadline),
                lambda r: r.usage.output_tokens,
            )
            if found.key is not None:
                self.remember(found, answer(response, request.request_id))
            return Routed(self._filtered(response), deployment.name, found.result)
        finally:
            self.leave()

    def stream(self, request: Request, deadline: float | None = None) -> RoutedStream:
        validate(request)
        model = self.model(request.model)
        if request.deployment:
            model.index(request.deployment)  # an unknown name fails now, not mid-stream
        return RoutedStream(self, request, deadline)

    def caches(self, request: Request) -> bool:
        """Whether the cache may answer or keep `request` (no I/O)."""
        if self.cache is None:
            return False
        return self.cache.applies(request, self.model(request.model).config.cache)

    async def look_up(self, request: Request) -> Lookup:
        """What the cache holds for `request` (NOT_CACHED without a cache)."""
        if self.cache is None:
            return NOT_CACHED
        options = self.model(request.model).config.cache
        return await self.cache.find(request, self.scopes[request.model], options)

    def remember(self, found: Lookup, answer: CachedAnswer) -> None:
        """Store a miss's answer in the background: a slow cache never delays a reply."""
        assert self.cache is not None
        task = asyncio.create_task(self.cache.remember(found, answer))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _filtered(self, response: Response) -> Response:
        if self.words is None:
            return response
        text, blocked = self.words.apply(response.text)
        finish = "content_filter" if blocked else response.finish_reason
        return replace(response, text=text, finish_reason=finish)

    async def embed(
        self, model: str, texts: Sequence[str], deadline: float | None = None
    ) -> RoutedEmbeddings:
        if not model:
            raise InvalidRequest("model", "is required")
        if not texts:
            raise InvalidRequest("inputs", "must not be empty")
        deployment, result = await self._walk(model, deadline, lambda d: d.provider.embed(texts))
        return RoutedEmbeddings(result, deployment.name)

    async def rerank(
        self,
        model: str,
        query: str,
        documents: Sequence[str],
        top_n: int = 0,
        deadline: float | None = None,
    ) -> RoutedRanking:
        """The `top_n` documents (0: all) most relevant to `query`, best first,
        from the first of the alias's deployments that can rerank (one that
        answers UNIMPLEMENTED is passed over, and not counted against its
        breaker). Retries, fallbacks and the deadline as for `embed`."""
        validate_rerank(model, query, documents, top_n)
        deployment, result = await self._walk(
            model, deadline, lambda d: d.provider.rerank(query, documents, top_n, deadline)
        )
        return RoutedRanking(result, deployment.name)

    async def _walk(
        self, model: str, deadline: float | None, call: Callable[[Deployment], Awaitable[T]]
    ) -> tuple[Deployment, T]:
        """A unary call that is not a chat (no cache, no token pacing) through
        the alias's plan."""
        plan = self.plan(Request(model, ()), stream=False)
        self.enter()
        try:
            return await first_success(self.walk_context, plan, deadline, "", call, lambda _: 0)
        finally:
            self.leave()

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

    async def flush(self) -> None:
        """Wait for the cache writes in flight."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def aclose(self) -> None:
        await self.flush()
        for model in self.models.values():
            for deployment in model.deployments:
                await deployment.provider.aclose()

    def log_cache_hit(self, request: Request, hit: CacheHit | None) -> None:
        if self.debug and hit is not None:
            log_debug(
                {
                    "request_id": request.request_id,
                    "alias": request.model,
                    "cache": "hit",
                    "kind": hit.kind,
                    "similarity": round(hit.similarity, 4),
                    "source": hit.request_id,
                }
            )


def _same_upstream(a: DeploymentConfig, b: DeploymentConfig) -> bool:
    return (a.provider, a.model, a.options) == (b.provider, b.model, b.options)


def _build(factory: ProviderFactory, config: DeploymentConfig, where: str) -> Provider:
    try:
        return factory(config)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
