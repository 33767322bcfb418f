"""The relational schema, as SQLAlchemy Core tables (the queries' view of it).

The migrations under `migrations/versions/` create and change it; a test checks
that a migrated database matches these definitions. Times are integer
milliseconds since the epoch; structured values are JSON text, so that SQLite
and PostgreSQL store them the same way.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("display_name", String(200), nullable=False),
    Column("requests_per_minute", Integer, nullable=False),
    Column("tokens_per_minute", Integer, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("prefix", String(48), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("requests_per_minute", Integer, nullable=False),
    Column("tokens_per_minute", Integer, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger, nullable=True),
    Index("ix_api_keys_tenant", "tenant"),
)

apps = Table(
    "apps",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    Column("prompt_template", Text, nullable=False),
    Column("retrieval", Text, nullable=False),
    Column("params", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "id"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("app", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "id"),
)

messages = Table(
    "messages",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("conversation", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "conversation", "seq"),
)

usage = Table(
    "usage",
    metadata,
    # SQLite autoincrements only an INTEGER primary key.
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("ts_ms", BigInteger, nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("app", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("deployment", String(200), nullable=False),
    Column("method", String(200), nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("run_id", String(64), nullable=False, server_default=""),  # a workflow run's calls
    Column("cost_nanos", BigInteger, nullable=False, server_default="0"),  # USD 1e-9
    Index("ix_usage_ts", "ts_ms"),
    Index("ix_usage_tenant_ts", "tenant", "ts_ms"),
)

audit = Table(
    "audit",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("resource", String(300), nullable=False),
    Column("before", Text, nullable=False),
    Column("after", Text, nullable=False),
    # Unique: two writers that read the same head cannot both extend it.
    Column("prev_hash", String(64), nullable=False, unique=True),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_resource", "resource"),
)

settings = Table(
    "settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

workflows = Table(
    "workflows",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("latest_version", Integer, nullable=False),
    Column("published_version", Integer, nullable=False),  # 0: none
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "id"),
)

workflow_versions = Table(
    "workflow_versions",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("workflow", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", Text, nullable=False),  # the document, JSON
    Column("actor", String(200), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "workflow", "version"),
)

workflow_runs = Table(
    "workflow_runs",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("workflow", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # running, succeeded, failed, cancelled
    Column("inputs", Text, nullable=False),
    Column("outputs", Text, nullable=False),
    Column("nodes", Text, nullable=False),  # each node's record, JSON list
    Column("error", Text, nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("started_ms", BigInteger, nullable=False),
    Column("finished_ms", BigInteger, nullable=True),
    PrimaryKeyConstraint("tenant", "id"),
    Index("ix_workflow_runs_workflow", "tenant", "workflow", "started_ms"),
    Index("ix_workflow_runs_started", "started_ms"),
)

secrets = Table(
    "secrets",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("ciphertext", Text, nullable=False),  # Fernet token
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "name"),
)

budgets = Table(
    "budgets",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("scope", String(16), nullable=False),  # tenant, key, app
    Column("subject", String(64), nullable=False),  # the tenant's, key's or app's id
    Column("limit_nanos", BigInteger, nullable=False),  # USD 1e-9
    Column("period", String(16), nullable=False),  # daily, weekly, monthly, none
    Column("alert_share", Float, nullable=False),  # 0: no alert
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "scope", "subject"),
)

prices = Table(
    "prices",
    metadata,
    # Set through the API; over the config's and the shipped table's.
    Column("deployment", String(200), primary_key=True),
    Column("input", Float, nullable=False),  # USD per million tokens
    Column("cached_input", Float, nullable=False),
    Column("output", Float, nullable=False),
    Column("request", Float, nullable=False),  # USD per call
    Column("embedding", Float, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)
