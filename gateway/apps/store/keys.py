"""API keys: create, list and revoke (audited, through the shared write path),
the hot path's credential lookup, and the first start's admin key.

A key's secret is returned once, by `create` or `bootstrap_admin`, and kept
nowhere: the table holds its hash, which never leaves the table (nor enters the
audit log). Revoking is idempotent: a revoked key keeps its first revoke time
and gets no second audit event.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.apps import keys as secrets
from gateway.apps.model import ApiKey, Credential, Tenant
from gateway.apps.store.db import Database, append_event, now_ms
from gateway.apps.store.tenants import find_tenant, tenant_row
from gateway.apps.tables import api_keys, settings, tenants
from gateway.errors import NotFound
from gateway.identity import Role


class CredentialLookup(Protocol):
    """What the authenticator needs: a presented key's hash -> its key and tenant."""

    async def credential(self, secret_hash: str) -> Credential | None:
        """The live key with this hash and its tenant; None for unknown or revoked."""
        ...


class KeyAdmin(Protocol):
    """What the App service administers (role admin)."""

    async def create(
        self, tenant: str, role: Role, actor: str, *, rpm: int = 0, tpm: int = 0
    ) -> tuple[ApiKey, str]:
        """A new key and its secret; NotFound for a missing tenant; audited as `actor`."""
        ...

    async def list(self, tenant: str) -> list[ApiKey]:
        """The tenant's keys, oldest first; NotFound for a missing tenant."""
        ...

    async def revoke(self, tenant: str, key_id: str, actor: str) -> ApiKey:
        """Idempotent; NotFound for a key not of this tenant; audited as `actor`."""
        ...


class Keys:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, tenant: str, role: Role, actor: str, *, rpm: int = 0, tpm: int = 0
    ) -> tuple[ApiKey, str]:
        """A new key and its secret; the secret is not kept anywhere."""
        key_id, secret = secrets.new_secret()

        async def work(conn: AsyncConnection) -> ApiKey:
            if await find_tenant(conn, tenant) is None:
                raise NotFound(f"tenant {tenant!r}")
            key = ApiKey(key_id, tenant, role, secrets.display_prefix(secret), rpm, tpm, now_ms())
            row = _key_row(key)
            await conn.execute(api_keys.insert().values(hash=secrets.hash_secret(secret), **row))
            await append_event(conn, actor, "CreateApiKey", _key_name(key), None, row)
            return key

        return await self._db.write(work), secret

    async def list(self, tenant: str) -> list[ApiKey]:
        async with self._db.engine.connect() as conn:
            if await find_tenant(conn, tenant) is None:
                raise NotFound(f"tenant {tenant!r}")
            rows = await conn.execute(
                select(api_keys).where(api_keys.c.tenant == tenant).order_by(api_keys.c.created_ms)
            )
            return [_key_from(r._asdict()) for r in rows]

    async def revoke(self, tenant: str, key_id: str, actor: str) -> ApiKey:
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
            await append_event(conn, actor, "RevokeApiKey", _key_name(key), _key_row(key), after)
            return _key_from(after)

        return await self._db.write(work)

    async def credential(self, secret_hash: str) -> Credential | None:
        """The live key with this hash and its tenant; None for unknown or revoked."""
        query = (
            select(api_keys, tenants.c.display_name, tenants.c.created_ms.label("tenant_created"),
                   tenants.c.requests_per_minute.label("tenant_rpm"),
                   tenants.c.tokens_per_minute.label("tenant_tpm"))
            .join(tenants, tenants.c.id == api_keys.c.tenant)
            .where(api_keys.c.hash == secret_hash, api_keys.c.revoked_ms.is_(None))
        )  # fmt: skip
        async with self._db.engine.connect() as conn:
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
            if await find_tenant(conn, tenant) is None:
                row = tenant_row(Tenant(tenant, tenant), now_ms())
                await conn.execute(tenants.insert().values(**row))
                await append_event(
                    conn, "bootstrap", "CreateTenant", f"tenants/{tenant}", None, row
                )
            key_id, secret = secrets.new_secret()
            key = ApiKey(key_id, tenant, Role.ADMIN, secrets.display_prefix(secret), 0, 0, now_ms())
            await conn.execute(
                api_keys.insert().values(hash=secrets.hash_secret(secret), **_key_row(key))
            )
            await append_event(
                conn, "bootstrap", "CreateApiKey", _key_name(key), None, _key_row(key)
            )

        await self._db.write(work)
        return secret


# --- rows <-> domain ----------------------------------------------------------------------


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
