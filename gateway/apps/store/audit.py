"""The audit log as its readers and outside writers see it. The store's own
writes append their events in their own transactions (`db.append_event`);
`append` is for changes made elsewhere."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.apps.model import AuditEvent
from gateway.apps.store.db import Database, append_event
from gateway.apps.tables import audit


class AuditReader(Protocol):
    """What the App service answers ListAuditEvents from."""

    async def list(self, after_seq: int, limit: int, resource: str = "") -> list[AuditEvent]:
        """Events after `after_seq` in sequence order, only `resource`'s if given."""
        ...


class Audit:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(
        self, actor: str, action: str, resource: str,
        before: dict[str, Any] | None, after: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        """Append one event for a change made outside this store (a config
        reload, a dataset collection), after that change took effect. Not
        idempotent: each call is one more event. Cancelling it rolls it back."""

        async def work(conn: AsyncConnection) -> None:
            await append_event(conn, actor, action, resource, before, after)

        await self._db.write(work)

    async def list(self, after_seq: int, limit: int, resource: str = "") -> list[AuditEvent]:
        query = select(audit).where(audit.c.seq > after_seq).order_by(audit.c.seq).limit(limit)
        if resource:
            query = query.where(audit.c.resource == resource)
        async with self._db.engine.connect() as conn:
            return [_event_from(r._asdict()) for r in await conn.execute(query)]

    async def events(self, batch: int = 1000) -> AsyncIterator[AuditEvent]:
        """Every event in sequence order, read in batches."""
        after = 0
        while page := await self.list(after, batch):
            for event_ in page:
                yield event_
            after = page[-1].seq


def _event_from(row: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        row["seq"], row["ts_ms"], row["actor"], row["action"], row["resource"],
        json.loads(row["before"]), json.loads(row["after"]), row["prev_hash"], row["hash"],
    )  # fmt: skip
