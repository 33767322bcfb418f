"""Prices set through the API, per deployment name: set and delete (audited,
through the shared write path) and list. They take precedence over the
config's and the shipped table's (router/pricing.py)."""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.apps.store.db import Database, append_event, now_ms
from gateway.apps.tables import prices
from gateway.errors import NotFound
from router.pricing import API, Price


class PriceAdmin(Protocol):
    async def set(self, deployment: str, price: Price, actor: str) -> Price:
        """Add or replace the deployment's price. Idempotent in effect; every
        call is audited."""
        ...

    async def delete(self, deployment: str, actor: str) -> None:
        """NotFound when the deployment has no price set here; audited."""
        ...

    async def list(self) -> dict[str, Price]:
        """Deployment name -> price, every one set here."""
        ...


class Prices:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def set(self, deployment: str, price: Price, actor: str) -> Price:
        async def work(conn: AsyncConnection) -> Price:
            before = await _find(conn, deployment)
            now = now_ms()
            row = {
                "deployment": deployment, "input": price.input,
                "cached_input": price.cached_input, "output": price.output,
                "request": price.request, "embedding": price.embedding,
                "created_ms": before["created_ms"] if before else now, "updated_ms": now,
            }  # fmt: skip
            if before is None:
                await conn.execute(prices.insert().values(**row))
            else:
                where = prices.c.deployment == deployment
                await conn.execute(prices.update().where(where).values(**row))
            await append_event(conn, actor, "SetPrice", _resource(deployment), before, row)
            return _price(row)

        return await self._db.write(work)

    async def delete(self, deployment: str, actor: str) -> None:
        async def work(conn: AsyncConnection) -> None:
            before = await _find(conn, deployment)
            if before is None:
                raise NotFound(f"price of deployment {deployment!r} (none was set)")
            await conn.execute(prices.delete().where(prices.c.deployment == deployment))
            await append_event(conn, actor, "DeletePrice", _resource(deployment), before, None)

        await self._db.write(work)

    async def list(self) -> dict[str, Price]:
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(select(prices).order_by(prices.c.deployment))
            return {r.deployment: _price(r._asdict()) for r in rows}


def _resource(deployment: str) -> str:
    return f"prices/{deployment}"


async def _find(conn: AsyncConnection, deployment: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(prices).where(prices.c.deployment == deployment))).first()
    return None if row is None else row._asdict()


def _price(row: dict[str, Any]) -> Price:
    return Price(
        row["input"], row["cached_input"], row["output"], row["request"], row["embedding"],
        API,
    )  # fmt: skip
