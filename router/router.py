"""The router: model alias -> ordered candidate deployments -> the first that works.

Routing decisions are synchronous and in-process; only provider calls await.
Retries happen only before a stream's first chunk: after it, a failure is
re-raised so the client sees an explicit error, never a silently short answer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from router.balance import SmoothWeightedRoundRobin
from router.config import ConfigError, DeploymentConfig, ModelConfig, RouterConfig
from router.errors import (
    AllProvidersFailed,
    ErrorKind,
    InvalidRequest,
    ModelNotFound,
    ProviderError,
)
from router.provider import Provider
from router.types import Chunk, Embeddings, Request, Response
from router.validate import validate

ProviderFactory = Callable[[DeploymentConfig], Provider]
T = TypeVar("T")

_EWMA_ALPHA = 0.2


class Deployment:
    """One upstream of an alias, with the traffic statistics the router keeps."""

    __slots__ = (
        "config",
        "ewma_latency_ms",
        "failures",
        "in_flight",
        "last_error",
        "provider",
        "requests",
    )

    def __init__(self, config: DeploymentConfig, provider: Provider) -> None:
        self.config = config
        self.provider = provider
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.ewma_latency_ms = 0.0
        self.last_error: ProviderError | None = None  # passive health: the last call's

    @property
    def name(self) -> str:
        return self.config.name

    def record(self, started: float, error: ProviderError | None) -> None:
        self.requests += 1
        if error is not None and error.kind is not ErrorKind.BAD_REQUEST:
            self.failures += 1
            self.last_error = error
            return
        self.last_error = None
        latency_ms = (time.monotonic() - started) * 1000.0
        if self.ewma_latency_ms == 0.0:
            self.ewma_latency_ms = latency_ms
        else:
            self.ewma_latency_ms += _EWMA_ALPHA * (latency_ms - self.ewma_latency_ms)


def _build(factory: ProviderFactory, config: DeploymentConfig, where: str) -> Provider:
    try:
        return factory(config)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


class Model:
    """An alias: its deployments and the strategy that orders them."""

    def __init__(self, alias: str, config: ModelConfig, factory: ProviderFactory) -> None:
        self.alias = alias
        self.config = config
        self.deployments = [
            Deployment(d, _build(factory, d, f"models.{alias}.deployments.{i}"))
            for i, d in enumerate(config.deployments)
        ]
        self._by_name = {d.name: d for d in self.deployments}
        self._balancer = SmoothWeightedRoundRobin([d.config.weight for d in self.deployments])

    def deployment(self, name: str) -> Deployment:
        try:
            return self._by_name[name]
        except KeyError:
            raise InvalidRequest(
                "deployment", f"model {self.alias!r} has no deployment {name!r}"
            ) from None

    def ordered(self, advance: bool = True) -> list[Deployment]:
        return [self.deployments[i] for i in self._balancer.order(advance)]


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
    deployment: str


@dataclass(frozen=True, slots=True)
class RoutedEmbeddings:
    embeddings: Embeddings
    deployment: str


class Router:
    """Serves requests for the aliases of one config snapshot."""

    def __init__(self, config: RouterConfig, factory: ProviderFactory) -> None:
        self.config = config
        self.models = {alias: Model(alias, m, factory) for alias, m in config.models.items()}

    def model(self, alias: str) -> Model:
        try:
            return self.models[alias]
        except KeyError:
            raise ModelNotFound(alias) from None

    def candidates(self, request: Request, advance: bool = True) -> list[Deployment]:
        """The deployments to try, in order: the alias's, then its fallbacks'.
        Only the alias's own balancer advances, and only when `advance`."""
        model = self.model(request.model)
        if request.deployment:
            return [model.deployment(request.deployment)]
        ordered = model.ordered(advance)
        for fallback in model.config.fallbacks:
            ordered += self.models[fallback].ordered(advance=False)
        return ordered

    def route(self, request: Request) -> Decision:
        """Dry run: the order the next real call would try, with no upstream
        call and no change to any balancer's state."""
        validate(request)
        model = self.model(request.model)
        candidates = self.candidates(request, advance=False)
        chosen = candidates[0]
        return Decision(
            model=model.alias,
            strategy="manual" if request.deployment else model.config.strategy,
            deployment=chosen.name,
            provider=chosen.config.provider,
            candidates=tuple(Candidate(d.name, d.config.provider) for d in candidates),
            upstream_request=chosen.provider.upstream_request(request),
        )

    async def generate(self, request: Request, deadline: float | None = None) -> Routed:
        validate(request)
        name, response = await self._first_success(
            request.model,
            self.candidates(request),
            deadline,
            lambda d: d.provider.generate(request, deadline),
        )
        return Routed(response, name)

    def stream(self, request: Request, deadline: float | None = None) -> RoutedStream:
        validate(request)
        return RoutedStream(request, self.candidates(request), deadline)

    async def embed(self, model: str, texts: Sequence[str]) -> RoutedEmbeddings:
        if not model:
            raise InvalidRequest("model", "is required")
        if not texts:
            raise InvalidRequest("inputs", "must not be empty")
        candidates = self.model(model).ordered()
        name, result = await self._first_success(
            model, candidates, None, lambda d: d.provider.embed(texts)
        )
        return RoutedEmbeddings(result, name)

    async def aclose(self) -> None:
        for model in self.models.values():
            for deployment in model.deployments:
                await deployment.provider.aclose()

    async def _first_success(
        self,
        alias: str,
        candidates: Sequence[Deployment],
        deadline: float | None,
        call: Callable[[Deployment], Awaitable[T]],
    ) -> tuple[str, T]:
        attempts: list[tuple[str, ProviderError]] = []
        for deployment in candidates:
            started = time.monotonic()
            deployment.in_flight += 1
            try:
                result = await call(deployment)
            except ProviderError as err:
                deployment.record(started, err)
                attempts.append((deployment.name, err))
                if not _worth_another(err, deadline):
                    break
            else:
                deployment.record(started, None)
                return deployment.name, result
            finally:
                deployment.in_flight -= 1
        raise AllProvidersFailed(alias, attempts)


def _worth_another(error: ProviderError, deadline: float | None) -> bool:
    return error.retryable and (deadline is None or time.monotonic() < deadline)


class RoutedStream:
    """An async iterator of chunks; `deployment` names the one serving it once
    the first chunk has arrived."""

    def __init__(
        self, request: Request, candidates: Sequence[Deployment], deadline: float | None
    ) -> None:
        self.deployment = ""
        self._request = request
        self._candidates = candidates
        self._deadline = deadline

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self.chunks()

    async def chunks(self) -> AsyncGenerator[Chunk, None]:
        """The chunks; close the generator (contextlib.aclosing) to stop early."""
        attempts: list[tuple[str, ProviderError]] = []
        for deployment in self._candidates:
            started = time.monotonic()
            deployment.in_flight += 1
            try:
                upstream = deployment.provider.stream(self._request, self._deadline)
                async with contextlib.aclosing(upstream):
                    async for chunk in upstream:
                        if not self.deployment:
                            self.deployment = deployment.name
                        yield chunk
            except ProviderError as err:
                deployment.record(started, err)
                if self.deployment:  # the client has tokens: no retry, say it failed
                    raise
                attempts.append((deployment.name, err))
                if not _worth_another(err, self._deadline):
                    break
            else:
                deployment.record(started, None)
                return
            finally:
                deployment.in_flight -= 1
        raise AllProvidersFailed(self._request.model, attempts)
