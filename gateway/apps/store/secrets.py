"""Tenants' secrets for workflow http_request headers: values are write-only
through the API and encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256)
with the gateway's key; every change is audited, never with its value.

The key comes from `apps.workflows.secrets_key`, else $INFERGATE_SECRETS_KEY,
else a key generated once into `{data_dir}/secrets.key` (mode 0600). With a
shared PostgreSQL store, give every gateway the same key in the config or the
environment: a secret written under one key cannot be read under another
(reveal answers FailedPrecondition saying so).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from secrets import token_hex

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.apps.store.db import Database, append_event, now_ms
from gateway.apps.tables import secrets
from gateway.apps.workflows.model import SecretInfo
from gateway.errors import FailedPrecondition, InvalidArgument, NotFound

log = logging.getLogger("infergate.secrets")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_VALUE_BYTES = 16 * 1024
ENV = "INFERGATE_SECRETS_KEY"


def load_key(configured: str, data_dir: Path) -> bytes:
    """The Fernet key: configured, from the environment, or kept in the data dir."""
    key = configured or os.environ.get(ENV, "")
    if key:
        try:
            Fernet(key)
        except ValueError:
            raise ValueError(
                "apps.workflows.secrets_key / $INFERGATE_SECRETS_KEY must be a Fernet key "
                "(32 url-safe base64-encoded bytes; make one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            ) from None
        return key.encode()
    path = data_dir / "secrets.key"
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    fresh = Fernet.generate_key()
    # Written whole under another name, then linked into place: a process
    # starting beside this one reads either no key or the whole key, and the
    # one that loses the race takes the winner's.
    spare = path.with_name(f".secrets.key.{token_hex(8)}")
    fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(fresh + b"\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(spare, path)
    except FileExistsError:
        return path.read_bytes().strip()
    finally:
        spare.unlink()
    log.warning(
        "generated the secrets key %s: back it up; gateways sharing a store need the same "
        "key (apps.workflows.secrets_key or $%s)", path, ENV,
    )  # fmt: skip
    return fresh


class Secrets:
    def __init__(self, db: Database, key: Callable[[], bytes]) -> None:
        """`key` is called on first use: a gateway whose tenants keep no
        secrets never loads (or makes) one."""
        self._db = db
        self._key = key

    @functools.cached_property
    def _fernet(self) -> Fernet:
        return Fernet(self._key())

    async def put(self, tenant: str, name: str, value: str, actor: str) -> SecretInfo:
        """Create or replace; audited as SetSecret (the name, never the value)."""
        if not NAME.match(name):
            raise InvalidArgument("name", "a letter or _ then letters, digits or _ (64 at most)")
        if not value:
            raise InvalidArgument("value", "must not be empty")
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise InvalidArgument("value", f"at most {MAX_VALUE_BYTES} bytes")
        token = self._fernet.encrypt(value.encode()).decode()

        async def work(conn: AsyncConnection) -> SecretInfo:
            old = await _get(conn, tenant, name)
            when = now_ms()
            created = old.created_ms if old else when
            if old:
                await conn.execute(
                    secrets.update()
                    .where(secrets.c.tenant == tenant, secrets.c.name == name)
                    .values(ciphertext=token, updated_ms=when)
                )
            else:
                await conn.execute(
                    secrets.insert().values(
                        tenant=tenant, name=name, ciphertext=token, created_ms=created,
                        updated_ms=when,
                    )
                )  # fmt: skip
            before = {"name": name, "updated_ms": old.updated_ms} if old else None
            await append_event(
                conn, actor, "SetSecret", _resource(tenant, name), before,
                {"name": name, "updated_ms": when},
            )  # fmt: skip
            return SecretInfo(name, created, when)

        return await self._db.write(work)

    async def delete(self, tenant: str, name: str, actor: str) -> None:
        async def work(conn: AsyncConnection) -> None:
            old = await _get(conn, tenant, name)
            if old is None:
                raise NotFound(f"secret {name!r}")
            await conn.execute(
                secrets.delete().where(secrets.c.tenant == tenant, secrets.c.name == name)
            )
            await append_event(
                conn, actor, "DeleteSecret", _resource(tenant, name),
                {"name": name, "updated_ms": old.updated_ms}, None,
            )  # fmt: skip

        await self._db.write(work)

    async def list(self, tenant: str) -> list[SecretInfo]:
        query = (
            select(secrets.c.name, secrets.c.created_ms, secrets.c.updated_ms)
            .where(secrets.c.tenant == tenant)
            .order_by(secrets.c.name)
        )
        async with self._db.engine.connect() as conn:
            return [SecretInfo(*r) for r in await conn.execute(query)]

    async def reveal(self, tenant: str, names: Sequence[str]) -> dict[str, str]:
        """The values of `names`; NotFound for a missing one."""
        if not names:
            return {}
        query = select(secrets.c.name, secrets.c.ciphertext).where(
            secrets.c.tenant == tenant, secrets.c.name.in_(list(names))
        )
        async with self._db.engine.connect() as conn:
            found = {name: token for name, token in await conn.execute(query)}
        values = {}
        for name in names:
            if name not in found:
                raise NotFound(f"secret {name!r}")
            try:
                values[name] = self._fernet.decrypt(found[name].encode()).decode()
            except InvalidToken:
                raise FailedPrecondition(
                    f"secret {name!r} was written under another secrets key: set the same "
                    "apps.workflows.secrets_key on every gateway, or set the secret again"
                ) from None
        return values


async def _get(conn: AsyncConnection, tenant: str, name: str) -> SecretInfo | None:
    row = (
        await conn.execute(
            select(secrets.c.name, secrets.c.created_ms, secrets.c.updated_ms).where(
                secrets.c.tenant == tenant, secrets.c.name == name
            )
        )
    ).first()
    return None if row is None else SecretInfo(*row)


def _resource(tenant: str, name: str) -> str:
    return f"tenants/{tenant}/secrets/{name}"
