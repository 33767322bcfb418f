"""The App layer's relational store: one class over SQLAlchemy Core, on SQLite
(aiosqlite, the embedded default) or PostgreSQL (asyncpg, for scale-out).

Every write that changes configuration appends its audit event in the same
transaction, so a change and its record commit or fail together. Audit events
form one chain; two writers extending the same head collide on the unique
`prev_hash`, and the loser's transaction is retried from the start.
Calls are not cancellation-safe beyond what a transaction gives: cancelling a
write rolls it back whole. No method takes a deadline; the engine's pool
timeout bounds waiting for a connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import BigInteger, Connection, case, event, func, literal, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.apps import audit as chain
from gateway.apps import keys as secrets
from gateway.apps.model import (
    ApiKey,
    App,
    AuditEvent,
    Credential,
    Retrieval,
    Tenant,
    Turn,
    UsageQuery,
    UsageRecord,
    UsageRow,
)
from gateway.apps.tables import (
    api_keys,
    apps,
    audit,
    conversations,
    messages,
    settings,
    tenants,
    usage,
)
from gateway.errors import AlreadyExists, InvalidArgument, NotFound
from gateway.identity import Role

T = TypeVar("T")
MIGRATIONS = Path(__file__).with_name("migrations")
_RETRIES = 5


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


class Store:
    """Tenants, keys, apps, conversations, usage and the audit log."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._write_lock = asyncio.Lock()  # one writer per process: no self-inflicted retries

    @classmethod
    async def open(cls, url: str, *, schema: str = "") -> Store:
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
        return cls(engine)

    async def aclose(self) -> None:
        await self.engine.dispose()

    async def _write(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        for attempt in range(_RETRIES):
            try:
                async with self._write_lock, self.engine.begin() as conn:
                    return await work(conn)
            except IntegrityError:
                # Another process extended the audit chain (or inserted the same
                # row) between our read and write: redo the whole transaction,
                # whose own checks turn a real duplicate into AlreadyExists.
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _audit(
        self, conn: AsyncConnection, actor: str, action: str, resource: str,
        before: dict[str, Any] | None, after: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        head = (
            await conn.execute(
                select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
            )
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

    # --- tenants ----------------------------------------------------------------------

    async def create_tenant(self, tenant: Tenant, actor: str) -> Tenant:
        async def work(conn: AsyncConnection) -> Tenant:
            if await _tenant(conn, tenant.id) is not None:
                raise AlreadyExists(f"tenant {tenant.id!r}")
            row = _tenant_row(tenant, now_ms())
            await conn.execute(tenants.insert().values(**row))
            await self._audit(conn, actor, "CreateTenant", f"tenants/{tenant.id}", None, row)
            return _tenant_from(row)

        return await self._write(work)

    async def get_tenant(self, tenant_id: str) -> Tenant:
        async with self.engine.connect() as conn:
            found = await _tenant(conn, tenant_id)
        if found is None:
            raise NotFound(f"tenant {tenant_id!r}")
        return found

    async def list_tenants(self, limit: int = 1000, after: str = "") -> list[Tenant]:
        query = select(tenants).where(tenants.c.id > after).order_by(tenants.c.id).limit(limit)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return [_tenant_from(r._asdict()) for r in rows]

    # --- keys -------------------------------------------------------------------------

    async def create_key(
        self, tenant: str, role: Role, actor: str, *, rpm: int = 0, tpm: int = 0
    ) -> tuple[ApiKey, str]:
        """A new key and its secret; the secret is not kept anywhere."""
        key_id, secret = secrets.new_secret()

        async def work(conn: AsyncConnection) -> ApiKey:
            if await _tenant(conn, tenant) is None:
                raise NotFound(f"tenant {tenant!r}")
            key = ApiKey(key_id, tenant, role, secrets.display_prefix(secret), rpm, tpm, now_ms())
            row = _key_row(key)
            await conn.execute(api_keys.insert().values(hash=secrets.hash_secret(secret), **row))
            await self._audit(conn, actor, "CreateApiKey", _key_name(key), None, row)
            return key

        return await self._write(work), secret

    async def list_keys(self, tenant: str) -> list[ApiKey]:
        async with self.engine.connect() as conn:
            if await _tenant(conn, tenant) is None:
                raise NotFound(f"tenant {tenant!r}")
            rows = await conn.execute(
                select(api_keys).where(api_keys.c.tenant == tenant).order_by(api_keys.c.created_ms)
            )
            return [_key_from(r._asdict()) for r in rows]

    async def revoke_key(self, tenant: str, key_id: str, actor: str) -> ApiKey:
        """Idempotent: revoking a revoked key keeps its first revoke time."""

        async def work(conn: AsyncConnection) -> ApiKey:
            row = (
                await conn.execute(
                    select(api_keys).where(api_keys.c.id == key_id, api_keys.c.tenant == tenant)
                )
            ).first()
            if row is None:
                raise NotFound(f"key tenants/{tenant}/keys/{key_id}")
            key = _key_from(row._asdict())
            if key.revoked_ms is not None:
                return key
            when = now_ms()
            await conn.execute(
                api_keys.update().where(api_keys.c.id == key_id).values(revoked_ms=when)
            )
            after = {**_key_row(key), "revoked_ms": when}
            await self._audit(conn, actor, "RevokeApiKey", _key_name(key), _key_row(key), after)
            return _key_from(after)

        return await self._write(work)

    async def credential(self, secret_hash: str) -> Credential | None:
        """The live key with this hash and its tenant; None for unknown or revoked."""
        query = (
            select(api_keys, tenants.c.display_name, tenants.c.created_ms.label("tenant_created"),
                   tenants.c.requests_per_minute.label("tenant_rpm"),
                   tenants.c.tokens_per_minute.label("tenant_tpm"))
            .join(tenants, tenants.c.id == api_keys.c.tenant)
            .where(api_keys.c.hash == secret_hash, api_keys.c.revoked_ms.is_(None))
        )  # fmt: skip
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        data = row._asdict()
        tenant = Tenant(
            data["tenant"], data["display_name"], data["tenant_rpm"], data["tenant_tpm"],
            data["tenant_created"],
        )  # fmt: skip
        return Credential(_key_from(data), tenant)

    async def bootstrap_admin(self, tenant: str) -> str | None:
        """On a store that never had one: the tenant, an admin key, and its
        secret (returned once). None when already done, here or by another process."""
        secret: str | None = None

        async def work(conn: AsyncConnection) -> None:
            nonlocal secret
            done = await conn.execute(select(settings).where(settings.c.name == "bootstrap"))
            if done.first() is not None:
                return
            await conn.execute(settings.insert().values(name="bootstrap", value=str(now_ms())))
            if await _tenant(conn, tenant) is None:
                row = _tenant_row(Tenant(tenant, tenant), now_ms())
                await conn.execute(tenants.insert().values(**row))
                await self._audit(conn, "bootstrap", "CreateTenant", f"tenants/{tenant}", None, row)
            key_id, secret = secrets.new_secret()
            key = ApiKey(key_id, tenant, Role.ADMIN, secrets.display_prefix(secret), 0, 0, now_ms())
            await conn.execute(
                api_keys.insert().values(hash=secrets.hash_secret(secret), **_key_row(key))
            )
            await self._audit(
                conn, "bootstrap", "CreateApiKey", _key_name(key), None, _key_row(key)
            )

        await self._write(work)
        return secret

    # --- apps -------------------------------------------------------------------------

    async def create_app(self, app: App, actor: str) -> App:
        async def work(conn: AsyncConnection) -> App:
            if await _app(conn, app.tenant, app.id) is not None:
                raise AlreadyExists(f"app {app.id!r}")
            when = now_ms()
            row = _app_row(app, when, when)
            await conn.execute(apps.insert().values(**row))
            await self._audit(conn, actor, "CreateApp", _app_name(app), None, _audited(row))
            return _app_from(row)

        return await self._write(work)

    async def get_app(self, tenant: str, app_id: str) -> App:
        async with self.engine.connect() as conn:
            found = await _app(conn, tenant, app_id)
        if found is None:
            raise NotFound(f"app {app_id!r}")
        return found

    async def list_apps(self, tenant: str, limit: int, after: str = "") -> list[App]:
        query = (
            select(apps)
            .where(apps.c.tenant == tenant, apps.c.id > after)
            .order_by(apps.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [_app_from(r._asdict()) for r in await conn.execute(query)]

    async def update_app(self, app: App, actor: str) -> App:
        async def work(conn: AsyncConnection) -> App:
            old = await _app(conn, app.tenant, app.id)
            if old is None:
                raise NotFound(f"app {app.id!r}")
            before = _app_row(old, old.created_ms, old.updated_ms)
            row = _app_row(app, old.created_ms, now_ms())
            await conn.execute(
                apps.update().where(apps.c.tenant == app.tenant, apps.c.id == app.id).values(**row)
            )
            await self._audit(
                conn, actor, "UpdateApp", _app_name(app), _audited(before), _audited(row)
            )
            return _app_from(row)

        return await self._write(work)

    async def delete_app(self, tenant: str, app_id: str, actor: str) -> None:
        async def work(conn: AsyncConnection) -> None:
            old = await _app(conn, tenant, app_id)
            if old is None:
                raise NotFound(f"app {app_id!r}")
            await conn.execute(apps.delete().where(apps.c.tenant == tenant, apps.c.id == app_id))
            before = _audited(_app_row(old, old.created_ms, old.updated_ms))
            await self._audit(conn, actor, "DeleteApp", _app_name(old), before, None)

        await self._write(work)

    # --- conversations ----------------------------------------------------------------

    async def history(self, tenant: str, app_id: str, conversation: str) -> list[Turn]:
        """The conversation's messages in order; NotFound unless it belongs to this
        tenant's app."""
        async with self.engine.connect() as conn:
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

    async def append_turns(
        self, tenant: str, app_id: str, conversation: str, turns: Sequence[Turn]
    ) -> None:
        """Add turns at the end, creating the conversation on its first turns."""
        async with self.engine.begin() as conn:
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

    # --- usage ------------------------------------------------------------------------

    async def add_usage(self, records: Sequence[UsageRecord]) -> None:
        """One batch insert. The records go to the driver as they are (tuples in
        column order): SQLAlchemy's per-row processing would cost several times
        the insert on a batch of thousands."""
        if not records:
            return
        async with self.engine.begin() as conn:
            await conn.exec_driver_sql(_usage_insert(conn.dialect.paramstyle), list(records))

    async def query_usage(self, q: UsageQuery) -> list[UsageRow]:
        bad = [g for g in q.group_by if g not in ("tenant", "app", "model", "deployment")]
        if bad:
            raise InvalidArgument("group_by", f"unknown grouping {bad[0]!r}")
        if q.bucket_s < 0:
            raise InvalidArgument("bucket_seconds", "must be >= 0")
        width = q.bucket_s * 1000
        start = literal(q.start_ms, BigInteger)
        bucket = ((usage.c.ts_ms // width) * width if width else start).label("bucket")
        groups = [usage.c[g] for g in q.group_by]
        errors = func.sum(case((usage.c.status != "OK", 1), else_=0))
        query = (
            select(
                bucket, *groups, func.count().label("requests"),
                func.sum(usage.c.input_tokens).label("input_tokens"),
                func.sum(usage.c.output_tokens).label("output_tokens"),
                errors.label("errors"),
            )
            .where(usage.c.ts_ms >= q.start_ms, usage.c.ts_ms < q.end_ms)
            .group_by(bucket, *groups)
            .order_by(bucket, *groups)
        )  # fmt: skip
        if q.tenant is not None:
            query = query.where(usage.c.tenant == q.tenant)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return [
                UsageRow(
                    int(r.bucket),
                    {g: r._mapping[g] for g in q.group_by},
                    int(r.requests),
                    int(r.input_tokens or 0),
                    int(r.output_tokens or 0),
                    int(r.errors or 0),
                )
                for r in rows
            ]

    # --- audit ------------------------------------------------------------------------

    async def append_audit(
        self, actor: str, action: str, resource: str,
        before: dict[str, Any] | None, after: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        """Append one event for a change made outside this store (a config
        reload, a dataset collection), after that change took effect. Not
        idempotent: each call is one more event. Cancelling it rolls it back."""

        async def work(conn: AsyncConnection) -> None:
            await self._audit(conn, actor, action, resource, before, after)

        await self._write(work)

    async def list_audit(self, after_seq: int, limit: int, resource: str = "") -> list[AuditEvent]:
        query = select(audit).where(audit.c.seq > after_seq).order_by(audit.c.seq).limit(limit)
        if resource:
            query = query.where(audit.c.resource == resource)
        async with self.engine.connect() as conn:
            return [_event_from(r._asdict()) for r in await conn.execute(query)]

    async def audit_events(self, batch: int = 1000) -> AsyncIterator[AuditEvent]:
        """Every event in sequence order, read in batches."""
        after = 0
        while page := await self.list_audit(after, batch):
            for event_ in page:
                yield event_
            after = page[-1].seq


# --- rows <-> domain ----------------------------------------------------------------------


async def _tenant(conn: AsyncConnection, tenant_id: str) -> Tenant | None:
    row = (await conn.execute(select(tenants).where(tenants.c.id == tenant_id))).first()
    return None if row is None else _tenant_from(row._asdict())


async def _app(conn: AsyncConnection, tenant: str, app_id: str) -> App | None:
    row = (
        await conn.execute(select(apps).where(apps.c.tenant == tenant, apps.c.id == app_id))
    ).first()
    return None if row is None else _app_from(row._asdict())


def _tenant_row(t: Tenant, created_ms: int) -> dict[str, Any]:
    return {
        "id": t.id, "display_name": t.display_name, "requests_per_minute": t.requests_per_minute,
        "tokens_per_minute": t.tokens_per_minute, "created_ms": created_ms,
    }  # fmt: skip


def _tenant_from(row: dict[str, Any]) -> Tenant:
    return Tenant(
        row["id"], row["display_name"], row["requests_per_minute"], row["tokens_per_minute"],
        row["created_ms"],
    )  # fmt: skip


def _key_name(key: ApiKey) -> str:
    return f"tenants/{key.tenant}/keys/{key.id}"


def _key_row(key: ApiKey) -> dict[str, Any]:
    """Everything but the hash, which never leaves the table (nor enters the audit log)."""
    return {
        "id": key.id, "tenant": key.tenant, "role": key.role.name.lower(), "prefix": key.prefix,
        "requests_per_minute": key.requests_per_minute,
        "tokens_per_minute": key.tokens_per_minute, "created_ms": key.created_ms,
        "revoked_ms": key.revoked_ms,
    }  # fmt: skip


def _key_from(row: dict[str, Any]) -> ApiKey:
    return ApiKey(
        row["id"], row["tenant"], Role[row["role"].upper()], row["prefix"],
        row["requests_per_minute"], row["tokens_per_minute"], row["created_ms"],
        row["revoked_ms"],
    )  # fmt: skip


def _app_name(app: App) -> str:
    return f"tenants/{app.tenant}/apps/{app.id}"


def _app_row(app: App, created_ms: int, updated_ms: int) -> dict[str, Any]:
    r = app.retrieval
    return {
        "tenant": app.tenant, "id": app.id, "display_name": app.display_name,
        "model": app.model, "prompt_template": app.prompt_template,
        "retrieval": json.dumps(
            {"collections": list(r.collections), "k": r.k, "score_threshold": r.score_threshold}
        ),
        "params": json.dumps(dict(app.params), sort_keys=True),
        "created_ms": created_ms, "updated_ms": updated_ms,
    }  # fmt: skip


def _audited(row: dict[str, Any]) -> dict[str, Any]:
    """An app row as the audit log keeps it: JSON columns as values, not text."""
    return {**row, "retrieval": json.loads(row["retrieval"]), "params": json.loads(row["params"])}


def _app_from(row: dict[str, Any]) -> App:
    r = json.loads(row["retrieval"])
    return App(
        tenant=row["tenant"], id=row["id"], model=row["model"],
        display_name=row["display_name"], prompt_template=row["prompt_template"],
        retrieval=Retrieval(tuple(r["collections"]), r["k"], r["score_threshold"]),
        params=json.loads(row["params"]), created_ms=row["created_ms"],
        updated_ms=row["updated_ms"],
    )  # fmt: skip


def _usage_insert(paramstyle: str) -> str:
    names = UsageRecord._fields
    marks = {
        "qmark": ["?"] * len(names),
        "numeric_dollar": [f"${i}" for i in range(1, len(names) + 1)],
        "format": ["%s"] * len(names),
    }[paramstyle]
    return f"INSERT INTO usage ({', '.join(names)}) VALUES ({', '.join(marks)})"


def _event_from(row: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        row["seq"], row["ts_ms"], row["actor"], row["action"], row["resource"],
        json.loads(row["before"]), json.loads(row["after"]), row["prev_hash"], row["hash"],
    )  # fmt: skip
