"""What a routing decision is made of: deployments, the aliases that group them,
and the plan of one call (deployments to try in order, those skipped and why).

A leaf of the router package: the router, the attempt walk and the routed
stream all use these types, so this module imports none of them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from router import strategy as strategies
from router.config import DeploymentConfig, ModelConfig, RetryConfig, RoutingConfig
from router.errors import InvalidRequest
from router.pricing import NANOS_PER_USD, Price, estimate_tokens, usd
from router.provider import Provider
from router.state import DeploymentState
from router.types import Request


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
        prices: Sequence[Price] = (),
    ) -> None:
        self.alias = alias
        self.prices = list(prices) or [Price()] * len(deployments)
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
        costs: list[int] = []
        ceiling = self.ceiling(request)
        if ceiling is not None or (name == "lowest_cost" and pinned is None):
            costs = self.estimates(request)
        if ceiling is not None:
            over = [i for i in usable if costs[i] > ceiling]
            skipped += [(self.deployments[i], _over(costs[i], ceiling)) for i in over]
            usable = [i for i in usable if costs[i] <= ceiling]
        if pinned is None and usable:
            strategy = self._strategies[name]
            if isinstance(strategy, strategies.LowestCost):
                usable = strategy.order_by_cost(usable, states, costs, advance)
            else:
                usable = strategy.order(usable, states, stream, advance)
        return name, [self.deployments[i] for i in usable], skipped

    def ceiling(self, request: Request) -> int | None:
        """Nano-dollars a call may cost at most: the lower of the request's and the alias's."""
        limits = [c for c in (request.max_cost_usd, self.config.max_cost_usd) if c is not None]
        return round(min(limits) * NANOS_PER_USD) if limits else None

    def estimates(self, request: Request) -> list[int]:
        """Each deployment's estimated cost of the call, in nano-dollars."""
        input_tokens, output_tokens = estimate_tokens(request)
        return [p.cost(input_tokens, output_tokens) for p in self.prices]


def _over(cost: int, ceiling: int) -> str:
    return f"estimated cost ${usd(cost):.6f} is above the ceiling ${usd(ceiling):.6f}"


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
    upstream_body: bytes = b""  # the exact bytes; b"" where the upstream takes no JSON
