"""What a call costs: a price per deployment, and the cost of a usage.

A deployment's price comes from, first to last: a price set through the API
for its name (stored by the App layer, source "api"); its own `price:` in the
config; the config's `prices:` entry for its upstream model; the shipped
table (router/price_table.py) when its provider is OpenAI or Anthropic; else
zero (the mock and local models cost what the config says). Costs are whole
nano-dollars (1e-9 USD), so that sums over millions of calls stay exact.

Pure and synchronous: a `PriceBook` is built once per config snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from router import price_table
from router.config import DeploymentConfig, PriceConfig, RouterConfig
from router.types import Request

NANOS_PER_USD = 1_000_000_000
CHARS_PER_TOKEN = 4  # a conservative average for estimates made before a call
OUTPUT_ESTIMATE = 256  # output tokens assumed for a call without max_tokens


def estimate_tokens(request: Request, output_default: int = OUTPUT_ESTIMATE) -> tuple[int, int]:
    """(input, output) tokens a call may use, before it runs: input by length,
    output by max_tokens."""
    chars = sum(len(m.text()) for m in request.messages)
    return chars // CHARS_PER_TOKEN + 1, request.params.max_tokens or output_default


def usd(nanos: int) -> float:
    return nanos / NANOS_PER_USD


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens, and per request."""

    input: float = 0.0
    cached_input: float = 0.0
    output: float = 0.0
    request: float = 0.0
    embedding: float = 0.0
    source: str = "none"  # "api", "deployment", "config", "table" or "none"

    def cost(
        self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0,
        embedding: bool = False,
    ) -> int:  # fmt: skip
        """Nano-dollars for one call's usage; cached tokens are part of the input."""
        if embedding:
            per_million = input_tokens * self.embedding
        else:
            cached = min(cached_input_tokens, input_tokens)
            per_million = (
                (input_tokens - cached) * self.input
                + cached * self.cached_input
                + output_tokens * self.output
            )
        return round(per_million * 1000 + self.request * NANOS_PER_USD)


ZERO = Price()
API = "api"  # the source of a price set through the API (the App layer stores them)


def _from_config(p: PriceConfig, source: str) -> Price:
    cached = p.input if p.cached_input is None else p.cached_input
    embedding = p.input if p.embedding is None else p.embedding
    return Price(p.input, cached, p.output, p.request, embedding, source)


def _match(model: str, names: Mapping[str, object]) -> str | None:
    """The longest key that is `model` or a prefix of it ending before a `-`."""
    if model in names:
        return model
    best = None
    for name in names:
        if model.startswith(name + "-") and (best is None or len(name) > len(best)):
            best = name
    return best


def price_of(deployment: DeploymentConfig, prices: Mapping[str, PriceConfig]) -> Price:
    if deployment.price is not None:
        return _from_config(deployment.price, "deployment")
    model = deployment.model
    if (name := _match(model, prices)) is not None:
        return _from_config(prices[name], "config")
    if deployment.provider in price_table.VENDORS:
        if (name := _match(model, price_table.CHAT)) is not None:
            i, c, o = price_table.CHAT[name]
            return Price(i, c, o, 0.0, i, "table")
        if (name := _match(model, price_table.EMBEDDING)) is not None:
            e = price_table.EMBEDDING[name]
            return Price(e, e, 0.0, 0.0, e, "table")
    return ZERO


@dataclass(frozen=True, slots=True)
class PriceEntry:
    alias: str
    deployment: str
    provider: str
    model: str
    price: Price


class PriceBook:
    """Every deployment's price in one config snapshot; `overrides` (deployment
    name -> price, set through the API) take precedence over the config."""

    def __init__(self, config: RouterConfig, overrides: Mapping[str, Price] | None = None) -> None:
        set_ = overrides or {}
        self.entries = [
            PriceEntry(
                alias, d.name, d.provider, d.model, set_.get(d.name) or price_of(d, config.prices)
            )
            for alias, model in config.models.items()
            for d in model.deployments
        ]
        self._by_key = {(e.alias, e.deployment): e.price for e in self.entries}
        self._by_name: dict[str, Price] = {}
        self._by_alias: dict[str, list[Price]] = {}
        for e in self.entries:
            self._by_name.setdefault(e.deployment, e.price)
            self._by_alias.setdefault(e.alias, []).append(e.price)
        self._all = [e.price for e in self.entries]

    def price(self, alias: str, deployment: str) -> Price:
        """The deployment's price; a fallback alias's deployment is found by
        its name alone. Zero for "" (a cached answer) or an unknown name."""
        found = self._by_key.get((alias, deployment))
        if found is None:
            found = self._by_name.get(deployment, ZERO)
        return found

    def estimate(self, alias: str, input_tokens: int, output_tokens: int) -> int:
        """Nano-dollars the call could cost at most: its alias's dearest
        deployment (every deployment's when the alias is not known yet)."""
        prices = self._by_alias.get(alias) or self._all
        return max((p.cost(input_tokens, output_tokens) for p in prices), default=0)

    def free(self) -> bool:
        """No deployment costs anything: the hot path can skip pricing."""
        return all(_zero(p) for p in self._all)


def _zero(p: Price) -> bool:
    return not (p.input or p.cached_input or p.output or p.request or p.embedding)
