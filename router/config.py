"""The gateway's YAML config, validated into immutable objects.

A bad file fails with a `ConfigError` whose message names each offending field
by its path (`models.chat.deployments.0.weight: ...`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

STRATEGIES = ("weighted_round_robin",)


class ConfigError(ValueError):
    """The config file cannot be used; the message says why."""


class Frozen(BaseModel):
    """Base of every config section: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DeploymentConfig(Frozen):
    name: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1, description="the upstream's own model name")
    weight: int = Field(default=1, ge=1, le=1000)
    options: dict[str, Any] = Field(default_factory=dict, description="provider settings")


class ModelConfig(Frozen):
    strategy: Literal[STRATEGIES] = "weighted_round_robin"  # type: ignore[valid-type]
    deployments: tuple[DeploymentConfig, ...] = Field(min_length=1)
    fallbacks: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> ModelConfig:
        names = [d.name for d in self.deployments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"deployment names must be unique, repeated: {dupes}")
        return self


class RouterConfig(Frozen):
    """The router's part of the config file; gateway.config adds the server's."""

    models: dict[str, ModelConfig] = Field(min_length=1)

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
