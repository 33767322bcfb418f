"""The access interceptor: who is calling, may they, is there budget, and what
did it use. Every RPC but health and reflection goes through it, over gRPC and
(through the same interceptor list) over REST.

Order per call: resolve the bearer key (cached briefly) -> check the RPC's role
-> bind the principal for the handler -> reserve the call's estimated cost on
its key's, tenant's and app's spend budgets -> take the request and token
budgets -> run the handler -> price the call from its real usage (stamped on
the reply's usage as `cost_usd` and sent as `x-infergate-cost` trailing
metadata) -> settle the token and spend reservations -> queue a usage record.
Refusals: no or unknown key UNAUTHENTICATED, low role PERMISSION_DENIED, spent
rate limit or spend budget RESOURCE_EXHAUSTED with a `retry-after` trailer. A
refusal never echoes the key, and a refused call takes no budget and leaves no
usage record. The interceptor adds no deadline of its own; a cancelled call is
recorded with status CANCELLED and its tokens and cost settled. A stream cut
before its usage arrived is charged for what it delivered: one token per text
chunk, and its input as estimated.

The wrapped handler is built once per method and resolves the caller from each
call's own metadata, so interceptors outside this one (metrics) may cache it.
Everything a key needs per call (principal, bucket names and sizes) is built
once when the key is looked up and cached with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from gateway import identity, metrics
from gateway.apps import calls, keys, metering, roles
from gateway.apps.limits import Budget, Limiter
from gateway.apps.model import Credential, UsageRecord
from gateway.apps.spend import BudgetSpent, Hold, Spend
from gateway.apps.store.keys import CredentialLookup
from gateway.apps.usage import UsageRecorder
from gateway.errors import GatewayError, PermissionDenied, QuotaExceeded, Unauthenticated
from gateway.identity import ANONYMOUS, Principal
from gateway.interceptors import Wrapping, behaviour_of, same_kind, streams_out
from gateway.status import abort
from router import spans
from router.pricing import NANOS_PER_USD, PriceBook

log = logging.getLogger("infergate")

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]
COST_HEADER = "x-infergate-cost"
# Priced at the deployment's embedding rate: input tokens only, no output.
_RERANK = "/infergate.v1.Router/Rerank"
_EMBEDDING_RATE = frozenset({"/infergate.v1.Router/Embed", _RERANK})


@dataclass(frozen=True, slots=True)
class Grant:
    """A resolved key, ready for the hot path."""

    principal: Principal
    requests: tuple[Budget, ...]  # cost 1 each: the key's and the tenant's requests/min
    tokens: tuple[tuple[str, int], ...]  # (bucket, tokens/min) of the key and the tenant

    @classmethod
    def of(cls, credential: Credential) -> Grant:
        key, tenant = credential.key, credential.tenant
        requests, tokens = [], []
        for name, owner in ((f"k:{key.id}:", key), (f"t:{tenant.id}:", tenant)):
            if owner.requests_per_minute > 0:
                requests.append(Budget(name + "r", owner.requests_per_minute, 1))
            if owner.tokens_per_minute > 0:
                tokens.append((name + "t", owner.tokens_per_minute))
        principal = Principal(key.tenant, key.role, key.id)
        return cls(principal, tuple(requests), tuple(tokens))


ANONYMOUS_GRANT = Grant(ANONYMOUS, (), ())


class Authenticator:
    """Key secret -> grant, cached for `ttl_s` so that the hot path does not
    query the store: a revoked key stops working within `ttl_s`. Unknown keys
    are cached too, so a flood of bad keys stays cheap. A key in use is looked
    up again in the background once half its `ttl_s` has passed, so its calls
    never wait on the store (a lookup that did cost 1-4 ms every `ttl_s` per
    key, bench/RESULTS.md "Issue 15"); a key unused for `ttl_s` is looked up
    on its next call."""

    def __init__(
        self, credentials: CredentialLookup, ttl_s: float,
        clock: Callable[[], float] = time.monotonic, max_entries: int = 100_000,
    ) -> None:  # fmt: skip
        self._credentials = credentials
        self._ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        # secret -> (expires, refresh after, grant)
        self._cache: dict[str, tuple[float, float, Grant | None]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}

    async def grant(self, secret: str) -> Grant | None:
        # Keyed by the presented secret, which this process holds in the call's
        # metadata anyway: a hit costs one dict lookup, no hash. Only the hash
        # ever reaches the store.
        now = self._clock()
        entry = self._cache.get(secret)
        if entry is not None and entry[0] > now:
            if entry[1] <= now and secret not in self._refreshing:
                task = asyncio.get_running_loop().create_task(self._refresh(secret))
                self._refreshing[secret] = task
            return entry[2]
        return await self._lookup(secret)

    async def _lookup(self, secret: str) -> Grant | None:
        credential = await self._credentials.credential(keys.hash_secret(secret))
        found = None if credential is None else Grant.of(credential)
        now = self._clock()
        if len(self._cache) >= self._max_entries:
            self._cache = {d: e for d, e in self._cache.items() if e[0] > now}
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
        self._cache[secret] = (now + self._ttl_s, now + self._ttl_s / 2, found)
        return found

    async def _refresh(self, secret: str) -> None:
        try:
            await self._lookup(secret)
        except Exception:  # the store is down: the entry expires, the next call asks
            log.warning("refreshing a cached API key failed", exc_info=True)
        finally:
            self._refreshing.pop(secret, None)


class AccessInterceptor(Wrapping):
    """With `authenticator` None (auth off) every call runs as ANONYMOUS, unlimited;
    usage is still recorded when `recorder` is set."""

    def __init__(
        self,
        *,
        authenticator: Authenticator | None,
        limiter: Limiter | None,
        recorder: UsageRecorder | None,
        output_estimate: int = 256,
        prices: Callable[[], PriceBook] | None = None,
        spend: Spend | None = None,
    ) -> None:
        self._authenticator = authenticator
        self.limiter = limiter
        self.recorder = recorder
        self.output_estimate = output_estimate
        self.prices = prices  # the live router's: None prices every call at zero
        self.spend = spend
        super().__init__()
        self._cost_counters: dict[tuple[str, str, str], Any] = {}

    def count_cost(self, tenant: str, model: str, deployment: str, nanos: int) -> None:
        labels = (tenant, model, deployment)
        counter = self._cost_counters.get(labels)
        if counter is None:
            counter = self._cost_counters[labels] = metrics.COST.labels(*labels)
        counter.inc(nanos / NANOS_PER_USD)

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        if details.method.startswith(roles.OPEN_PREFIXES):
            return await continuation(details)
        return await super().intercept_service(continuation, details)

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return _wrap(handler, self, method)

    async def grant(self, method: str, context: grpc.aio.ServicerContext) -> Grant:
        """This call's grant, or abort UNAUTHENTICATED / PERMISSION_DENIED."""
        if self._authenticator is None:
            return ANONYMOUS_GRANT
        try:
            secret = keys.bearer(context.invocation_metadata())
            if secret is None:
                raise Unauthenticated(
                    "no API key: send `authorization: Bearer <key>` (an HTTP header; gRPC metadata)"
                )
            grant = await self._authenticator.grant(secret)
            if grant is None:
                raise Unauthenticated("unknown or revoked API key")
            needed = roles.required(method)
            if grant.principal.role < needed:
                have = grant.principal.role.name.lower()
                raise PermissionDenied(f"{method} needs role {needed.name.lower()}; key has {have}")
        except GatewayError as exc:
            await abort(context, exc)
        return grant


class _Meter:
    """One metered call: its reservations, and what it used and cost."""

    __slots__ = ("call", "cost", "grant", "hold", "input_estimate", "method", "reserved",
                 "started")  # fmt: skip

    def __init__(self, grant: Grant, method: str, request: Any) -> None:
        self.grant = grant
        self.method = method
        self.call = calls.Call()
        metering.observe_request(self.call, request)
        self.reserved = 0
        self.input_estimate = 0
        self.hold: Hold | None = None
        self.cost = -1  # nano-dollars, once priced
        self.started = time.perf_counter()

    def price(self, access: AccessInterceptor) -> int:
        """The call's cost from its usage; computed once, when it ends."""
        if self.cost < 0:
            call = self.call
            # A stream cut before its usage, or a rerank answered by an upstream
            # that counts no tokens (search units, a local model): the estimate.
            uncounted = self.method == _RERANK and call.deployment
            if not call.usage_seen and (call.chunks or uncounted):
                call.input_tokens, call.output_tokens = self.input_estimate, call.chunks
            cost = 0
            if access.prices is not None and call.deployment and not call.cached:
                price = access.prices().price(call.model, call.deployment)
                cost = price.cost(
                    call.input_tokens, call.output_tokens, call.cached_input_tokens,
                    self.method in _EMBEDDING_RATE,
                )  # fmt: skip
            self.cost = cost
        return self.cost

    def stamp(self, access: AccessInterceptor, message: Any) -> None:
        """Put the cost on the message that carries the usage."""
        usage = metering.usage_of(message)
        if usage is not None:
            usage.cost_usd = self.price(access) / NANOS_PER_USD

    def header(self, access: AccessInterceptor, context: grpc.aio.ServicerContext) -> None:
        text = f"{self.price(access) / NANOS_PER_USD:.9f}".rstrip("0").rstrip(".")
        context.set_trailing_metadata(((COST_HEADER, text),))

    def settle(
        self, access: AccessInterceptor, context: grpc.aio.ServicerContext,
        error: BaseException | None,
    ) -> None:  # fmt: skip
        call = self.call
        cost = self.price(access)
        limiter = access.limiter
        if self.reserved and limiter is not None:
            used = call.input_tokens + call.output_tokens
            for bucket, per_minute in self.grant.tokens:
                limiter.adjust(bucket, per_minute, min(self.reserved, per_minute) - used)
        principal = self.grant.principal
        if self.hold is not None and access.spend is not None:
            access.spend.settle(self.hold, cost)
        if cost:
            access.count_cost(principal.tenant, call.model, call.deployment, cost)
        recorder = access.recorder
        if recorder is not None:
            recorder.record(
                UsageRecord(
                    int(time.time() * 1000), principal.tenant, principal.key_id or "", call.app,
                    call.model, call.deployment, self.method, call.input_tokens,
                    call.output_tokens, int((time.perf_counter() - self.started) * 1000),
                    _status(context, error), "", cost,
                )
            )  # fmt: skip


async def _admit(
    access: AccessInterceptor, grant: Grant, method: str, request: Any,
    context: grpc.aio.ServicerContext,
) -> _Meter | None:  # fmt: skip
    """Take the call's spend, request and token budgets (or abort
    RESOURCE_EXHAUSTED); a meter for a model-consuming call."""
    if method not in metering.TOKEN_METHODS:
        meter = None
    else:
        meter = _Meter(grant, method, request)
        input_tokens, output_tokens = metering.estimate_split(request, access.output_estimate)
        meter.input_estimate = input_tokens
        spend = access.spend
        if spend is not None and spend.active:
            amount = 0
            if access.prices is not None:
                amount = access.prices().estimate(meter.call.model, input_tokens, output_tokens)
            principal = grant.principal
            try:
                meter.hold = await spend.reserve(
                    principal.tenant, principal.key_id or "", meter.call.app, amount
                )
            except BudgetSpent as exc:  # counted in infergate_budget_refusals_total
                await abort(context, exc)
        meter.reserved = input_tokens + output_tokens if grant.tokens else 0
    limiter = access.limiter
    if limiter is None or not (grant.requests or grant.tokens):
        return meter
    budgets: tuple[Budget, ...] | list[Budget] = grant.requests
    if meter is not None and grant.tokens:
        budgets = [*grant.requests, *(Budget(b, pm, meter.reserved) for b, pm in grant.tokens)]
    if budgets:
        wait = await limiter.acquire(budgets)
        if wait > 0:
            if meter is not None and meter.hold is not None and access.spend is not None:
                access.spend.settle(meter.hold, 0)  # refused: give the spend back
            await abort(context, QuotaExceeded("rate limit of this key or tenant", wait))
    return meter


def _status(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if error is None:
        return "OK"
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "UNKNOWN"


def _wrap(
    handler: grpc.RpcMethodHandler, access: AccessInterceptor, method: str
) -> grpc.RpcMethodHandler:
    behaviour = behaviour_of(handler)
    if streams_out(handler) and inspect.isasyncgenfunction(behaviour):
        return same_kind(handler, _guarded_stream(behaviour, access, method))
    return same_kind(handler, _guarded_unary(behaviour, access, method))


def _guarded_unary(behaviour: Any, access: AccessInterceptor, method: str) -> Any:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with spans.span("infergate.auth"):
            grant = await access.grant(method, context)
        token = identity.bind(grant.principal)
        try:
            with spans.span("infergate.limits"):
                meter = await _admit(access, grant, method, request, context)
            if meter is None:
                return await behaviour(request, context)
            call_token = calls.bind(meter.call)
            error: BaseException | None = None
            try:
                response = await behaviour(request, context)
                metering.observe_response(meter.call, response)
                meter.stamp(access, response)
                meter.header(access, context)
                return response
            except BaseException as exc:
                error = exc
                raise
            finally:
                calls.unbind(call_token)
                meter.settle(access, context, error)
        finally:
            identity.unbind(token)

    return unary


def _guarded_stream(behaviour: Any, access: AccessInterceptor, method: str) -> Any:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        # The bindings span the yields: the RPC's own task drives this generator
        # from start to close, so they never reach another call.
        with spans.span("infergate.auth"):
            grant = await access.grant(method, context)
        token = identity.bind(grant.principal)
        try:
            with spans.span("infergate.limits"):
                meter = await _admit(access, grant, method, request, context)
            if meter is None:
                async with contextlib.aclosing(behaviour(request, context)) as messages:
                    async for message in messages:
                        yield message
                return
            call, call_token = meter.call, calls.bind(meter.call)
            observe = metering.observe_response
            error: BaseException | None = None
            try:
                async with contextlib.aclosing(behaviour(request, context)) as messages:
                    async for message in messages:
                        observe(call, message)
                        if call.usage_seen and meter.cost < 0:
                            meter.stamp(access, message)
                        yield message
                meter.header(access, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                calls.unbind(call_token)
                meter.settle(access, context, error)
        finally:
            identity.unbind(token)

    return stream
