"""The gateway's YAML config, validated into immutable objects.

A bad file fails with a `ConfigError` whose message names each offending field
by its path (`models.chat.deployments.0.weight: ...`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

STRATEGIES = ("weighted_round_robin", "lowest_latency", "least_in_flight", "lowest_cost")
Strategy = Literal["weighted_round_robin", "lowest_latency", "least_in_flight", "lowest_cost"]


class ConfigError(ValueError):
    """The config file cannot be used; the message says why. `unused` holds
    what was built before the error (providers), for the caller to close."""

    def __init__(self, message: str, unused: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.unused = list(unused)


class Frozen(BaseModel):
    """Base of every config section: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class PriceConfig(Frozen):
    """What a deployment charges (router/pricing.py): USD per million tokens, and per call."""

    input: float = Field(default=0, ge=0, allow_inf_nan=False, description="USD / 1M input tokens")
    cached_input: float | None = Field(
        default=None, ge=0, allow_inf_nan=False,
        description="USD / 1M input tokens read from the upstream's prompt cache; default: input",
    )  # fmt: skip
    output: float = Field(
        default=0, ge=0, allow_inf_nan=False, description="USD / 1M output tokens"
    )
    request: float = Field(default=0, ge=0, allow_inf_nan=False, description="USD per call")
    embedding: float | None = Field(
        default=None, ge=0, allow_inf_nan=False,
        description="USD / 1M embedded tokens; default: input",
    )  # fmt: skip


class DeploymentConfig(Frozen):
    name: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1, description="the upstream's own model name")
    weight: int = Field(default=1, ge=1, le=1000)
    options: dict[str, Any] = Field(default_factory=dict, description="provider settings")
    when_env: str | None = Field(
        default=None,
        min_length=1,
        description="served only when this environment variable is set (e.g. its API key)",
    )
    price: PriceConfig | None = Field(
        default=None, description="default: the config's `prices`, then the shipped table, else 0"
    )


class BreakerConfig(Frozen):
    """A deployment's circuit breaker (the Hystrix model)."""

    window_s: float = Field(default=30, gt=0, description="rolling window for the failure rate")
    buckets: int = Field(default=10, ge=1, le=600)
    min_requests: int = Field(default=10, ge=1, description="no rate verdict below this volume")
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    consecutive_failures: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=15, gt=0, description="open this long, then half-open")
    half_open_probes: int = Field(default=1, ge=1, description="trial calls let through")
    auth_cooldown_s: float = Field(
        default=300, gt=0, description="after the upstream refused our key"
    )


class RetryConfig(Frozen):
    retries: int = Field(default=1, ge=0, le=10, description="extra rounds over the candidates")
    backoff_base_s: float = Field(default=0.05, ge=0)
    backoff_max_s: float = Field(default=2.0, ge=0)
    attempt_timeout_s: float = Field(
        default=60, gt=0, description="per attempt: the whole call, or a stream's first chunk"
    )
    inter_token_timeout_s: float = Field(default=30, gt=0, description="a stalled stream is cut")


class RuleAction(Frozen):
    strategy: Literal[
        "weighted_round_robin",
        "lowest_latency",
        "least_in_flight",
        "lowest_cost",
        "specific_provider",
    ]
    provider: str = Field(default="", description="the deployment, for specific_provider")

    @model_validator(mode="after")
    def _provider_named(self) -> RuleAction:
        if (self.strategy == "specific_provider") != bool(self.provider):
            raise ValueError("provider is required with specific_provider, and only with it")
        return self


class Rule(Frozen):
    when: dict[str, str] = Field(min_length=1, description="request metadata that must match")
    then: RuleAction


class RoutingStrategyConfig(Frozen):
    default: Strategy = "weighted_round_robin"
    override: tuple[Rule, ...] = ()


class ModelCacheConfig(Frozen):
    """One alias's use of the request cache's semantic matching."""

    semantic: bool = Field(
        default=False, description="match prompts by meaning (a request may also opt in)"
    )
    threshold: float | None = Field(
        default=None, gt=0, le=1, description="cosine similarity; default: cache.semantic's"
    )
    with_sampling: bool = Field(
        default=False, description="semantic hits also for temperature > 0 (or unset)"
    )
    with_tools: bool = Field(default=False, description="semantic hits also with tools")


class ModelConfig(Frozen):
    routing_strategy: RoutingStrategyConfig = RoutingStrategyConfig()
    deployments: tuple[DeploymentConfig, ...] = Field(min_length=1)
    fallbacks: tuple[str, ...] = ()
    retry: RetryConfig | None = Field(default=None, description="default: the top-level retry")
    breaker: BreakerConfig | None = Field(default=None, description="default: top-level breaker")
    max_cost_usd: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="skip deployments whose estimated cost per call is above this",
    )  # fmt: skip
    cache: ModelCacheConfig = ModelCacheConfig()

    @model_validator(mode="before")
    @classmethod
    def _strategy_shorthand(cls, data: Any) -> Any:
        """`strategy: X` is short for `routing_strategy: {default: X}`."""
        if isinstance(data, dict) and "strategy" in data:
            data = dict(data)
            if "routing_strategy" in data:
                raise ValueError("give strategy or routing_strategy, not both")
            data["routing_strategy"] = {"default": data.pop("strategy")}
        return data

    @model_validator(mode="after")
    def _names(self) -> ModelConfig:
        names = [d.name for d in self.deployments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"deployment names must be unique, repeated: {dupes}")
        for i, rule in enumerate(self.routing_strategy.override):
            if rule.then.provider and rule.then.provider not in names:
                raise ValueError(
                    f"routing_strategy.override.{i}.then.provider: no deployment "
                    f"{rule.then.provider!r} (have {names})"
                )
        return self

    @property
    def strategy(self) -> str:
        return self.routing_strategy.default


class SemanticCacheConfig(Frozen):
    """Semantic matching (router/semantic.py): the last user turn's embedding
    against those of cached prompts with the same everything else. Applies to
    the aliases that opt in (`models.X.cache.semantic`) and to requests that
    ask for it."""

    threshold: float = Field(
        default=0.85, gt=0, le=1, description="cosine similarity a hit needs (bench/RESULTS.md)"
    )
    guard: Literal["strict", "basic", "off"] = Field(
        default="strict",
        description="router/semantic_guard.py's checks on a hit's two prompts (English); "
        "strict also refuses a one-word substitution",
    )
    max_prompt_chars: int = Field(
        default=500, ge=1, description="longer last turns are not embedded: exact matching only"
    )
    max_bytes: int = Field(
        default=32 << 20, ge=1024, description="the in-process index of cached prompts"
    )
    embed_timeout_s: float = Field(
        default=0.5, gt=0, description="a prompt not embedded by then: the call goes on as a miss"
    )


class CacheConfig(Frozen):
    """The request cache (router/cache.py): answers for deterministic or
    opted-in requests, matched exactly and, where asked, by meaning. Entries
    are per tenant, and per alias config: a reload that changes an alias's
    deployments or prices leaves its old entries unmatched."""

    enabled: bool = False
    ttl_s: float = Field(default=300.0, gt=0, allow_inf_nan=False)
    max_bytes: int = Field(default=64 << 20, ge=1024, description="memory backend only")
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "infergate:cache:"
    semantic: SemanticCacheConfig = SemanticCacheConfig()
    warm_file: Path | None = Field(
        default=None, description="JSONL of requests answered into the cache after start-up"
    )


class FilterConfig(Frozen):
    """Terms to catch in model output, and what to do when one appears."""

    terms: tuple[str, ...]
    action: Literal["mask", "block"] = "mask"
    case_sensitive: bool = False
    mask_char: str = "*"

    @field_validator("terms")
    @classmethod
    def _terms_not_blank(cls, terms: tuple[str, ...]) -> tuple[str, ...]:
        if not terms:
            raise ValueError("give at least one term")
        blank = [i for i, term in enumerate(terms) if not term.strip()]
        if blank:
            raise ValueError(f"terms must not be empty or blank (positions {blank})")
        return terms

    @field_validator("mask_char")
    @classmethod
    def _one_char(cls, mask_char: str) -> str:
        if len(mask_char) != 1:
            raise ValueError(f"mask_char must be exactly one character, got {mask_char!r}")
        return mask_char


class RoutingConfig(Frozen):
    debug: bool = Field(
        default=False, description="ROUTING_DEBUG lines (or INFERGATE_ROUTING_DEBUG=1)"
    )
    exploration: float = Field(
        default=0.05, ge=0, le=0.5, description="lowest_latency: share of picks that explore"
    )
    ewma_alpha: float = Field(default=0.3, gt=0, le=1)
    probe_interval_s: float = Field(default=15, ge=0, description="0 disables active probes")
    probe_timeout_s: float = Field(default=5, gt=0)


class RouterConfig(Frozen):
    """The router's part of the config file; gateway.config adds the server's."""

    models: dict[str, ModelConfig] = Field(min_length=1)
    routing: RoutingConfig = RoutingConfig()
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    cache: CacheConfig = CacheConfig()
    filter: FilterConfig | None = Field(default=None, description="over every model's output")
    prices: dict[str, PriceConfig] = Field(
        default_factory=dict,
        description="by upstream model (exact, or a prefix before a `-`): over the shipped table",
    )

    @model_validator(mode="before")
    @classmethod
    def _leave_out_absent(cls, data: Any) -> Any:
        """Drop deployments whose `when_env` variable is unset, and models left with
        none, so one file can offer every vendor and serve those with a key."""
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            return data
        models = {}
        for alias, model in data["models"].items():
            deployments = model.get("deployments") if isinstance(model, dict) else None
            if isinstance(deployments, list) and deployments:
                kept = [d for d in deployments if _present(d)]
                if not kept:
                    continue
                model = {**model, "deployments": kept}
            models[alias] = model
        return {**data, "models": models}

    def retry_for(self, alias: str) -> RetryConfig:
        return self.models[alias].retry or self.retry

    def breaker_for(self, alias: str) -> BreakerConfig:
        return self.models[alias].breaker or self.breaker

    @model_validator(mode="after")
    def _fallbacks_exist(self) -> RouterConfig:
        for alias, model in self.models.items():
            for fallback in model.fallbacks:
                if fallback == alias:
                    raise ValueError(
                        f"models.{alias}.fallbacks: a model cannot fall back to itself"
                    )
                if fallback not in self.models:
                    raise ValueError(f"models.{alias}.fallbacks: unknown model {fallback!r}")
        return self


def _present(deployment: Any) -> bool:
    name = deployment.get("when_env") if isinstance(deployment, dict) else None
    return not isinstance(name, str) or not name or bool(os.environ.get(name))


C = TypeVar("C", bound=BaseModel)


def parse_config(data: Any, source: str = "<config>", kind: type[C] = RouterConfig) -> C:  # type: ignore[assignment]
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError(f"{source}: invalid config\n" + "\n".join(lines)) from None


def load_config(path: str | Path, kind: type[C] = RouterConfig) -> C:  # type: ignore[assignment]
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(data, str(path), kind)
