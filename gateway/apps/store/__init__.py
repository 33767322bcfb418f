"""The App layer's relational store: one class per aggregate over one shared
database (SQLAlchemy Core, on SQLite via aiosqlite, the embedded default, or
PostgreSQL via asyncpg, for scale-out).

`Store` opens the database once (connect and migrate, `db.Database`) and holds
the aggregates: `tenants`, `keys`, `apps`, `turns` (conversations), `usage`,
`audit`, `workflows` (and their versions), `runs`, `secrets`, `budgets` and
`prices`. Every write that changes configuration appends its audit event in
the same transaction, so a change and its record commit or fail together; a
collision with another writer on the audit chain retries the whole
transaction (`db.py`). Conversation turns, usage records and workflow run
records are not audited and are written in transactions of their own. Calls
are not cancellation-safe beyond what a transaction gives: cancelling a write
rolls it back whole. No method takes a deadline; the engine's pool timeout
bounds waiting for a connection.

Each aggregate module also declares the small protocols its consumers type
against (e.g. `keys.CredentialLookup` for the authenticator); the classes here
satisfy them structurally.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.apps.audit import Anchor
from gateway.apps.config import AppsConfig
from gateway.apps.store.apps import Apps
from gateway.apps.store.audit import Audit, AuditReader
from gateway.apps.store.budgets import BudgetAdmin, Budgets
from gateway.apps.store.db import Database, now_ms
from gateway.apps.store.keys import KeyAdmin, Keys
from gateway.apps.store.prices import PriceAdmin, Prices
from gateway.apps.store.secrets import Secrets, load_key
from gateway.apps.store.tenants import TenantAdmin, Tenants
from gateway.apps.store.turns import Turns
from gateway.apps.store.usage import Usage, UsageReader
from gateway.apps.store.workflows import Runs, Workflows

__all__ = ["Administration", "Store", "audit_anchor", "now_ms", "open_store", "store_url"]


class Administration(Protocol):
    """What the App service serves besides apps and chat: tenants, keys, usage
    totals and the audit log."""

    @property
    def tenants(self) -> TenantAdmin: ...

    @property
    def keys(self) -> KeyAdmin: ...

    @property
    def usage(self) -> UsageReader: ...

    @property
    def audit(self) -> AuditReader: ...

    @property
    def budgets(self) -> BudgetAdmin: ...

    @property
    def prices(self) -> PriceAdmin: ...


class Store:
    """Tenants, keys, apps, conversations, usage, the audit log, workflows
    (versions and runs), the tenants' secrets and budgets."""

    def __init__(self, db: Database, secrets_key: Callable[[], bytes] | None = None) -> None:
        self.db = db
        self.tenants = Tenants(db)
        self.keys = Keys(db)
        self.apps = Apps(db)
        self.turns = Turns(db)
        self.usage = Usage(db)
        self.audit = Audit(db)
        self.workflows = Workflows(db)
        self.runs = Runs(db)
        self.secrets = Secrets(db, secrets_key or Fernet.generate_key)
        self.budgets = Budgets(db)
        self.prices = Prices(db)

    @classmethod
    async def open(
        cls, url: str, *, schema: str = "", anchor: Anchor | None = None,
        secrets_key: Callable[[], bytes] | None = None,
    ) -> Store:  # fmt: skip
        """Connect and migrate to the newest schema. Idempotent: an up-to-date
        database is left as it is. `anchor`: where the audit head is kept;
        `secrets_key`: loads the secrets' Fernet key when first needed (None:
        one for this process only)."""
        return cls(await Database.open(url, schema=schema, anchor=anchor), secrets_key)

    async def aclose(self) -> None:
        await self.db.aclose()

    @property
    def engine(self) -> AsyncEngine:
        return self.db.engine


def store_url(config: AppsConfig, data_dir: Path) -> str:
    """The configured database, else SQLite in the data dir."""
    if config.store.url:
        return config.store.url
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{data_dir / 'infergate.db'}"


def audit_anchor(data_dir: Path) -> Anchor:
    """Where this host keeps the newest audit head it wrote (gateway/apps/audit.py)."""
    return Anchor(data_dir / "audit-head.json")


async def open_store(config: AppsConfig, data_dir: Path) -> Store:
    url, schema = store_url(config, data_dir), config.store.pg_schema

    def key() -> bytes:
        return load_key(config.workflows.secrets_key, data_dir)

    return await Store.open(url, schema=schema, anchor=audit_anchor(data_dir), secrets_key=key)
