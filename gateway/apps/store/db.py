"""The database every aggregate of the store shares: the engine, opening
(connect and migrate), the one write path, and the audit chain's append.

Every write that changes configuration goes through `Database.write` and
appends its audit event with `append_event` on the same connection, so a change
and its record commit or fail together. Audit events form one chain; two
writers extending the same head collide on the unique `prev_hash`, and the
loser's transaction is retried from the start. One process writes through one
lock, so its own writers never collide. Cancelling a write rolls it back whole.
No method takes a deadline; the engine's pool timeout bounds waiting for a
connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, event, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.apps import audit as chain
from gateway.apps.tables import audit

T = TypeVar("T")
MIGRATIONS = Path(__file__).parent.with_name("migrations")
_RETRIES = 5
log = logging.getLogger("infergate.store")
_HEAD = "infergate_audit_head"  # conn.info key: the event this transaction appended


def now_ms() -> int:
    return int(time.time() * 1000)


def _migrate(connection: Connection) -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per start is noise
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; the busy timeout makes a
    # second process wait for the write lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Database:
    """SQLAlchemy Core on SQLite (aiosqlite, the embedded default) or
    PostgreSQL (asyncpg, for scale-out)."""

    def __init__(self, engine: AsyncEngine, anchor: chain.Anchor | None = None) -> None:
        self.engine = engine
        self.anchor = anchor  # moved to the newest event after each commit that wrote one
        self._write_lock = asyncio.Lock()  # one writer per process: no self-inflicted retries

    @classmethod
    async def open(
        cls, url: str, *, schema: str = "", anchor: chain.Anchor | None = None
    ) -> Database:
        """Connect and migrate to the newest schema. Idempotent: an up-to-date
        database is left as it is."""
        kwargs: dict[str, Any] = {}
        if url.startswith("postgresql") and schema:
            kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
        engine = create_async_engine(url, **kwargs)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        for attempt in range(3):
            try:
                async with engine.begin() as conn:
                    if kwargs:  # a PostgreSQL schema of its own: made on first use
                        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                    await conn.run_sync(_migrate)
                break
            except DBAPIError:
                # Workers starting together race to migrate; the loser finds
                # the schema migrated on its next try.
                if attempt == 2:
                    await engine.dispose()
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        return cls(engine, anchor)

    async def aclose(self) -> None:
        await self.engine.dispose()

    @staticmethod
    async def _advance(anchor: chain.Anchor, head: chain.Head) -> None:
        try:
            await asyncio.to_thread(anchor.advance, head)
        except OSError:  # the change committed: say so, and keep it
            log.exception("could not move the audit anchor %s to %d", anchor.path, head.seq)

    async def write(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `work` in one transaction under the process's write lock; on an
        IntegrityError run it again from the start (up to 5 times in all).
        Once it committed, the audit anchor moves to the event it appended."""
        for attempt in range(_RETRIES):
            try:
                async with self._write_lock:
                    async with self.engine.begin() as conn:
                        conn.info.pop(_HEAD, None)
                        result = await work(conn)
                        head: chain.Head | None = conn.info.pop(_HEAD, None)
                    if head is not None and self.anchor is not None:
                        await self._advance(self.anchor, head)
                    return result
            except IntegrityError:
                # Another process extended the audit chain (or inserted the same
                # row) between our read and write: redo the whole transaction,
                # whose own checks turn a real duplicate into AlreadyExists.
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")


async def append_event(
    conn: AsyncConnection, actor: str, action: str, resource: str,
    before: dict[str, Any] | None, after: dict[str, Any] | None,
) -> None:  # fmt: skip
    """Extend the audit chain by one event, in `conn`'s transaction (one that
    `Database.write` runs, so that a collision with another writer retries it)."""
    head = (
        await conn.execute(select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1))
    ).first()
    seq, prev = (head.seq + 1, head.hash) if head else (1, chain.GENESIS)
    ts, b, a = now_ms(), chain.canonical(before), chain.canonical(after)
    digest = chain.event_hash(seq, ts, actor, action, resource, b, a, prev)
    await conn.execute(
        audit.insert().values(
            seq=seq, ts_ms=ts, actor=actor, action=action, resource=resource,
            before=b, after=a, prev_hash=prev, hash=digest,
        )
    )  # fmt: skip
    conn.info[_HEAD] = chain.Head(seq, digest)  # for Database.write, once committed
