"""Tenants: create (audited, through the shared write path), get and list."""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.apps.model import Tenant
from gateway.apps.store.db import Database, append_event, now_ms
from gateway.apps.tables import tenants
from gateway.errors import AlreadyExists, NotFound


class TenantAdmin(Protocol):
    """What the App service administers (role admin)."""

    async def create(self, tenant: Tenant, actor: str) -> Tenant:
        """AlreadyExists for a taken id; audited as `actor`."""
        ...

    async def list(self, limit: int = 1000, after: str = "") -> list[Tenant]:
        """In id order, ids after `after`."""
        ...


class Tenants:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, tenant: Tenant, actor: str) -> Tenant:
        async def work(conn: AsyncConnection) -> Tenant:
            if await find_tenant(conn, tenant.id) is not None:
                raise AlreadyExists(f"tenant {tenant.id!r}")
            row = tenant_row(tenant, now_ms())
            await conn.execute(tenants.insert().values(**row))
            await append_event(conn, actor, "CreateTenant", f"tenants/{tenant.id}", None, row)
            return tenant_from(row)

        return await self._db.write(work)

    async def get(self, tenant_id: str) -> Tenant:
        async with self._db.engine.connect() as conn:
            found = await find_tenant(conn, tenant_id)
        if found is None:
            raise NotFound(f"tenant {tenant_id!r}")
        return found

    async def list(self, limit: int = 1000, after: str = "") -> list[Tenant]:
        query = select(tenants).where(tenants.c.id > after).order_by(tenants.c.id).limit(limit)
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(query)
            return [tenant_from(r._asdict()) for r in rows]


# --- rows <-> domain ----------------------------------------------------------------------


async def find_tenant(conn: AsyncConnection, tenant_id: str) -> Tenant | None:
    row = (await conn.execute(select(tenants).where(tenants.c.id == tenant_id))).first()
    return None if row is None else tenant_from(row._asdict())


def tenant_row(t: Tenant, created_ms: int) -> dict[str, Any]:
    return {
        "id": t.id, "display_name": t.display_name, "requests_per_minute": t.requests_per_minute,
        "tokens_per_minute": t.tokens_per_minute, "created_ms": created_ms,
    }  # fmt: skip


def tenant_from(row: dict[str, Any]) -> Tenant:
    return Tenant(
        row["id"], row["display_name"], row["requests_per_minute"], row["tokens_per_minute"],
        row["created_ms"],
    )  # fmt: skip
