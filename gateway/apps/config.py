"""The `apps` section of the config file: auth, store, limits, budgets, usage and workflows."""

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


class BudgetsConfig(Frozen):
    """Spend budgets per key, tenant and app (set through the API; gateway/apps/spend.py)."""

    backend: Literal["memory", "redis"] = Field(
        default="memory", description="redis: replicas share one spend; memory: this process"
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "infergate:spend:"
    refresh_s: float = Field(
        default=5, gt=0, le=3600, description="budgets changed on another replica apply this late"
    )


class UsageConfig(Frozen):
    enabled: bool = True
    batch_size: int = Field(default=500, ge=1)
    flush_interval_s: float = Field(default=1.0, gt=0)


class WorkflowsConfig(Frozen):
    http_allow_private: bool = Field(
        default=False,
        description="http_request nodes may reach loopback, private and link-local addresses",
    )
    http_allowed_networks: tuple[str, ...] = Field(
        default=(), description="CIDRs http_request nodes may reach even when private"
    )
    http_timeout_s: float = Field(default=30, gt=0, le=600, description="an http_request's cap")
    http_max_response_bytes: int = Field(default=1 << 20, ge=1, le=64 << 20)
    map_concurrency: int = Field(default=8, ge=1, le=256, description="a map node's cap")
    run_retention_days: float = Field(default=7, gt=0, description="run records kept this long")
    record_max_chars: int = Field(
        default=4096, ge=64, description="each value in a run record is cut to this length"
    )
    secrets_key: str = Field(
        default="",
        description="Fernet key that encrypts the tenants' secrets; empty: "
        "$INFERGATE_SECRETS_KEY, else a key generated in {data_dir}/secrets.key",
    )


class AppsConfig(Frozen):
    auth: AuthConfig = AuthConfig()
    store: StoreConfig = StoreConfig()
    limits: LimitsConfig = LimitsConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    usage: UsageConfig = UsageConfig()
    workflows: WorkflowsConfig = WorkflowsConfig()
