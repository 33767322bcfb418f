"""Apps, scoped by tenant: create, update and delete (audited, through the
shared write path), get and list. The audit log keeps an app's JSON columns
(retrieval, params) as values, not as the text the table holds."""

from __future__ import annotations

import json
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.apps.model import App, Retrieval
from gateway.apps.store.db import Database, append_event, now_ms
from gateway.apps.tables import apps
from gateway.errors import AlreadyExists, NotFound


class AppLookup(Protocol):
    """What the chat engine needs: one app of a tenant."""

    async def get(self, tenant: str, app_id: str) -> App:
        """NotFound unless `tenant` has an app `app_id`."""
        ...


class AppRepository(AppLookup, Protocol):
    """What the app catalog keeps: a tenant's apps, each write audited as `actor`."""

    async def create(self, app: App, actor: str) -> App:
        """AlreadyExists for an id this tenant has."""
        ...

    async def list(self, tenant: str, limit: int, after: str = "") -> list[App]:
        """In id order, ids after `after`."""
        ...

    async def update(self, app: App, actor: str) -> App:
        """Replaces every field but the creation time; NotFound for a missing app."""
        ...

    async def delete(self, tenant: str, app_id: str, actor: str) -> None:
        """NotFound for a missing app."""
        ...


class Apps:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, app: App, actor: str) -> App:
        async def work(conn: AsyncConnection) -> App:
            if await _app(conn, app.tenant, app.id) is not None:
                raise AlreadyExists(f"app {app.id!r}")
            when = now_ms()
            row = _app_row(app, when, when)
            await conn.execute(apps.insert().values(**row))
            await append_event(conn, actor, "CreateApp", _app_name(app), None, _audited(row))
            return _app_from(row)

        return await self._db.write(work)

    async def get(self, tenant: str, app_id: str) -> App:
        async with self._db.engine.connect() as conn:
            found = await _app(conn, tenant, app_id)
        if found is None:
            raise NotFound(f"app {app_id!r}")
        return found

    async def list(self, tenant: str, limit: int, after: str = "") -> list[App]:
        query = (
            select(apps)
            .where(apps.c.tenant == tenant, apps.c.id > after)
            .order_by(apps.c.id)
            .limit(limit)
        )
        async with self._db.engine.connect() as conn:
            return [_app_from(r._asdict()) for r in await conn.execute(query)]

    async def update(self, app: App, actor: str) -> App:
        async def work(conn: AsyncConnection) -> App:
            old = await _app(conn, app.tenant, app.id)
            if old is None:
                raise NotFound(f"app {app.id!r}")
            before = _app_row(old, old.created_ms, old.updated_ms)
            row = _app_row(app, old.created_ms, now_ms())
            await conn.execute(
                apps.update().where(apps.c.tenant == app.tenant, apps.c.id == app.id).values(**row)
            )
            await append_event(
                conn, actor, "UpdateApp", _app_name(app), _audited(before), _audited(row)
            )
            return _app_from(row)

        return await self._db.write(work)

    async def delete(self, tenant: str, app_id: str, actor: str) -> None:
        async def work(conn: AsyncConnection) -> None:
            old = await _app(conn, tenant, app_id)
            if old is None:
                raise NotFound(f"app {app_id!r}")
            await conn.execute(apps.delete().where(apps.c.tenant == tenant, apps.c.id == app_id))
            before = _audited(_app_row(old, old.created_ms, old.updated_ms))
            await append_event(conn, actor, "DeleteApp", _app_name(old), before, None)

        await self._db.write(work)


# --- rows <-> domain ----------------------------------------------------------------------


async def _app(conn: AsyncConnection, tenant: str, app_id: str) -> App | None:
    row = (
        await conn.execute(select(apps).where(apps.c.tenant == tenant, apps.c.id == app_id))
    ).first()
    return None if row is None else _app_from(row._asdict())


def _app_name(app: App) -> str:
    return f"tenants/{app.tenant}/apps/{app.id}"


def _app_row(app: App, created_ms: int, updated_ms: int) -> dict[str, Any]:
    r = app.retrieval
    return {
        "tenant": app.tenant, "id": app.id, "display_name": app.display_name,
        "model": app.model, "prompt_template": app.prompt_template,
        "retrieval": json.dumps({
            "collections": list(r.collections), "k": r.k, "score_threshold": r.score_threshold,
            "rerank": r.rerank, "rerank_top_n": r.rerank_top_n,
        }),
        "params": json.dumps(dict(app.params), sort_keys=True),
        "created_ms": created_ms, "updated_ms": updated_ms,
    }  # fmt: skip


def _audited(row: dict[str, Any]) -> dict[str, Any]:
    """An app row as the audit log keeps it: JSON columns as values, not text."""
    return {**row, "retrieval": json.loads(row["retrieval"]), "params": json.loads(row["params"])}


def _app_from(row: dict[str, Any]) -> App:
    r = json.loads(row["retrieval"])
    # Apps saved before rerank existed have no rerank keys: they do not rerank.
    retrieval = Retrieval(
        tuple(r["collections"]), r["k"], r["score_threshold"],
        r.get("rerank", False), r.get("rerank_top_n", 0),
    )  # fmt: skip
    return App(
        tenant=row["tenant"], id=row["id"], model=row["model"],
        display_name=row["display_name"], prompt_template=row["prompt_template"],
        retrieval=retrieval,
        params=json.loads(row["params"]), created_ms=row["created_ms"],
        updated_ms=row["updated_ms"],
    )  # fmt: skip
