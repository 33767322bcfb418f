"""The `apps` section of the config file: auth, store, limits and usage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from router.config import Frozen


class AuthConfig(Frozen):
    enabled: bool = Field(default=True, description="off: every call runs as the default tenant")
    cache_ttl_s: float = Field(
        default=5, gt=0, le=300, description="key lookups are cached this long: revocation delay"
    )
    bootstrap_tenant: str = Field(
        default="default", min_length=1, description="first start: its admin key is printed once"
    )


class StoreConfig(Frozen):
    url: str = Field(
        default="",
        description="SQLAlchemy async URL; empty: SQLite at {data_dir}/infergate.db. "
        "PostgreSQL: postgresql+asyncpg://user@host:5432/db",
    )
    pg_schema: str = Field(
        default="",
        pattern=r"^([A-Za-z_][A-Za-z0-9_]{0,62})?$",
        description="PostgreSQL: a schema of its own (created when missing) as the search_path",
    )


class LimitsConfig(Frozen):
    backend: Literal["memory", "redis"] = Field(
        default="memory", description="redis: replicas share one budget"
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "infergate:limit:"
    output_estimate_tokens: int = Field(
        default=256, ge=1, description="reserved for a call without max_tokens; settled after"
    )


class UsageConfig(Frozen):
    enabled: bool = True
    batch_size: int = Field(default=500, ge=1)
    flush_interval_s: float = Field(default=1.0, gt=0)


class AppsConfig(Frozen):
    auth: AuthConfig = AuthConfig()
    store: StoreConfig = StoreConfig()
    limits: LimitsConfig = LimitsConfig()
    usage: UsageConfig = UsageConfig()
