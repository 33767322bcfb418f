"""Conversations and their messages, scoped by tenant and app. Not audited:
`append` runs in one transaction of its own, outside the shared write path
(no write lock, no retry); cancelling it rolls it back whole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import func, select

from gateway.apps.model import Turn
from gateway.apps.store.db import Database, now_ms
from gateway.apps.tables import conversations, messages
from gateway.errors import NotFound


class Conversations(Protocol):
    """What the chat engine remembers between a conversation's turns."""

    async def history(self, tenant: str, app_id: str, conversation: str) -> list[Turn]:
        """The conversation's turns in order; NotFound unless it belongs to this
        tenant's app."""
        ...

    async def append(
        self, tenant: str, app_id: str, conversation: str, turns: Sequence[Turn]
    ) -> None:
        """Add turns at the end, creating the conversation on its first turns."""
        ...


class Turns:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def history(self, tenant: str, app_id: str, conversation: str) -> list[Turn]:
        """The conversation's messages in order; NotFound unless it belongs to this
        tenant's app."""
        async with self._db.engine.connect() as conn:
            owner = (
                await conn.execute(
                    select(conversations.c.app).where(
                        conversations.c.tenant == tenant, conversations.c.id == conversation
                    )
                )
            ).first()
            if owner is None or owner.app != app_id:
                raise NotFound(f"conversation {conversation!r}")
            rows = await conn.execute(
                select(messages.c.role, messages.c.content)
                .where(messages.c.tenant == tenant, messages.c.conversation == conversation)
                .order_by(messages.c.seq)
            )
            return [Turn(r.role, r.content) for r in rows]

    async def append(
        self, tenant: str, app_id: str, conversation: str, turns: Sequence[Turn]
    ) -> None:
        """Add turns at the end, creating the conversation on its first turns."""
        async with self._db.engine.begin() as conn:
            last = (
                await conn.execute(
                    select(func.max(messages.c.seq)).where(
                        messages.c.tenant == tenant, messages.c.conversation == conversation
                    )
                )
            ).scalar()
            if last is None:
                await conn.execute(
                    conversations.insert().values(
                        tenant=tenant, id=conversation, app=app_id, created_ms=now_ms()
                    )
                )
            start = (last or 0) + 1
            await conn.execute(
                messages.insert(),
                [
                    {"tenant": tenant, "conversation": conversation, "seq": start + i,
                     "role": t.role, "content": t.content, "created_ms": now_ms()}
                    for i, t in enumerate(turns)
                ],
            )  # fmt: skip
