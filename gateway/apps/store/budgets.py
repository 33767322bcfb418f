"""Budgets: set and delete (audited, through the shared write path), list, and
what a budget's subject spent since a time (from the usage records)."""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.apps.model import BudgetRule
from gateway.apps.store.db import Database, append_event, now_ms
from gateway.apps.store.tenants import find_tenant
from gateway.apps.tables import api_keys, budgets, usage
from gateway.errors import NotFound


class BudgetAdmin(Protocol):
    """What the App service administers."""

    async def set(self, rule: BudgetRule, actor: str) -> BudgetRule:
        """Add or replace the budget of `rule.name`; NotFound for an unknown
        tenant or key. Idempotent in effect; every call is audited."""
        ...

    async def delete(self, tenant: str, scope: str, subject: str, actor: str) -> None:
        """NotFound when there is no such budget; audited."""
        ...

    async def list(self, tenant: str | None = None) -> list[BudgetRule]:
        """In name order; every tenant's when `tenant` is None."""
        ...

    async def spent(self, rule: BudgetRule, since_ms: int) -> int:
        """Nano-dollars the rule's subject spent since `since_ms`, as recorded."""
        ...


class Budgets:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def set(self, rule: BudgetRule, actor: str) -> BudgetRule:
        async def work(conn: AsyncConnection) -> BudgetRule:
            if await find_tenant(conn, rule.tenant) is None:
                raise NotFound(f"tenant {rule.tenant!r}")
            if rule.scope == "key" and not await _key_exists(conn, rule.tenant, rule.subject):
                raise NotFound(f"key tenants/{rule.tenant}/keys/{rule.subject}")
            before = await _find(conn, rule.tenant, rule.scope, rule.subject)
            now = now_ms()
            row = _row(rule, before["created_ms"] if before else now, now)
            where = _where(rule.tenant, rule.scope, rule.subject)
            if before is None:
                await conn.execute(budgets.insert().values(**row))
            else:
                await conn.execute(budgets.update().where(*where).values(**row))
            await append_event(conn, actor, "SetBudget", rule.name, before, row)
            return _rule(row)

        return await self._db.write(work)

    async def delete(self, tenant: str, scope: str, subject: str, actor: str) -> None:
        async def work(conn: AsyncConnection) -> None:
            before = await _find(conn, tenant, scope, subject)
            if before is None:
                raise NotFound(f"budget of {BudgetRule(scope, tenant, subject, 0).name}")
            await conn.execute(budgets.delete().where(*_where(tenant, scope, subject)))
            await append_event(conn, actor, "DeleteBudget", _rule(before).name, before, None)

        await self._db.write(work)

    async def list(self, tenant: str | None = None) -> list[BudgetRule]:
        query = select(budgets).order_by(budgets.c.tenant, budgets.c.scope, budgets.c.subject)
        if tenant is not None:
            query = query.where(budgets.c.tenant == tenant)
        async with self._db.engine.connect() as conn:
            return [_rule(r._asdict()) for r in await conn.execute(query)]

    async def spent(self, rule: BudgetRule, since_ms: int) -> int:
        """Nano-dollars the rule's subject spent since `since_ms`, as recorded."""
        where = [usage.c.tenant == rule.tenant, usage.c.ts_ms >= since_ms]
        if rule.scope == "key":
            where.append(usage.c.key_id == rule.subject)
        elif rule.scope == "app":
            where.append(usage.c.app == rule.subject)
        query = select(func.coalesce(func.sum(usage.c.cost_nanos), 0)).where(*where)
        async with self._db.engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)


# --- rows <-> domain ----------------------------------------------------------------------


def _where(tenant: str, scope: str, subject: str) -> list[Any]:
    return [budgets.c.tenant == tenant, budgets.c.scope == scope, budgets.c.subject == subject]


async def _find(
    conn: AsyncConnection, tenant: str, scope: str, subject: str
) -> dict[str, Any] | None:
    row = (await conn.execute(select(budgets).where(*_where(tenant, scope, subject)))).first()
    return None if row is None else row._asdict()


async def _key_exists(conn: AsyncConnection, tenant: str, key_id: str) -> bool:
    query = select(api_keys.c.id).where(api_keys.c.tenant == tenant, api_keys.c.id == key_id)
    return (await conn.execute(query)).first() is not None


def _row(rule: BudgetRule, created_ms: int, updated_ms: int) -> dict[str, Any]:
    return {
        "tenant": rule.tenant, "scope": rule.scope, "subject": rule.subject,
        "limit_nanos": rule.limit_nanos, "period": rule.period,
        "alert_share": rule.alert_share, "created_ms": created_ms, "updated_ms": updated_ms,
    }  # fmt: skip


def _rule(row: dict[str, Any]) -> BudgetRule:
    return BudgetRule(
        row["scope"], row["tenant"], row["subject"], int(row["limit_nanos"]), row["period"],
        float(row["alert_share"]), int(row["updated_ms"]),
    )  # fmt: skip
