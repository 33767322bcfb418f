"""The gateway's YAML config, validated into immutable objects.

A bad file fails with a `ConfigError` whose message names each offending field
by its path (`models.chat.deployments.0.weight: ...`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

STRATEGIES = ("weighted_round_robin",)


class ConfigError(ValueError):
    """The config file cannot be used; the message says why."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeploymentConfig(_Frozen):
    name: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1, description="the upstream's own model name")
    weight: int = Field(default=1, ge=1, le=1000)
    options: dict[str, Any] = Field(default_factory=dict, description="provider settings")


class ModelConfig(_Frozen):
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


class KeepaliveConfig(_Frozen):
    time_s: float = Field(default=30, gt=0, description="server pings an idle client this often")
    timeout_s: float = Field(default=10, gt=0, description="and drops it if no ack by then")
    min_client_ping_interval_s: float = Field(default=10, gt=0)
    permit_without_calls: bool = True


class ServerConfig(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0 disables /metrics")
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_concurrent_streams: int = Field(default=1024, ge=1)
    keepalive: KeepaliveConfig = KeepaliveConfig()
    drain_delay_s: float = Field(
        default=0, ge=0, description="after SIGTERM: NOT_SERVING this long before refusing RPCs"
    )
    grace_period_s: float = Field(
        default=15, ge=0, description="then in-flight RPCs get this long to finish"
    )


class GatewayConfig(_Frozen):
    server: ServerConfig = ServerConfig()
    models: dict[str, ModelConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _fallbacks_exist(self) -> GatewayConfig:
        for alias, model in self.models.items():
            for fallback in model.fallbacks:
                if fallback not in self.models:
                    raise ValueError(f"models.{alias}.fallbacks: unknown model {fallback!r}")
        return self


def parse_config(data: Any, source: str = "<config>") -> GatewayConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError(f"{source}: invalid config\n" + "\n".join(lines)) from None


def load_config(path: str | Path) -> GatewayConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(data, str(path))
