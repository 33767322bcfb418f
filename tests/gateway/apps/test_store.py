"""The App layer's store: one suite, run against SQLite and a real PostgreSQL
(127.0.0.1:5432, a fresh schema per test; under CI=true a missing PostgreSQL
fails these tests instead of skipping them)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, update

from gateway.apps import keys
from gateway.apps.model import App, Retrieval, Tenant, Turn, UsageQuery, UsageRecord
from gateway.apps.store import Store
from gateway.apps.tables import apps, metadata
from gateway.apps.usage import UsageRecorder
from gateway.errors import AlreadyExists, InvalidArgument, NotFound
from gateway.identity import Role
from tests.conftest import service_missing

PG_DSN = os.environ.get("INFERGATE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PG_URL = PG_DSN.replace("postgresql://", "postgresql+asyncpg://", 1)


def _in_thread(work: Callable[[], Awaitable[None]]) -> None:
    """Run setup SQL on its own loop in a thread: fixtures here are synchronous,
    outside the test's event loop."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, work()).result()  # type: ignore[arg-type]


async def _sql(statement: str) -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=2)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, empty schema in the test database, dropped afterwards."""
    schema = f"infergate_{uuid.uuid4().hex[:12]}"
    try:
        _in_thread(lambda: _sql(f'CREATE SCHEMA "{schema}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        service_missing(f"no PostgreSQL at {PG_DSN} ({exc!r}); start one for these tests")
    yield schema
    _in_thread(lambda: _sql(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(SQLAlchemy URL, PostgreSQL schema) of an empty database."""
    if request.param == "postgres":
        return PG_URL, request.getfixturevalue("pg_schema")
    return f"sqlite+aiosqlite:///{tmp_path / 'infergate.db'}", ""


@pytest.fixture
async def store(store_url: tuple[str, str]) -> AsyncIterator[Store]:
    opened = await Store.open(store_url[0], schema=store_url[1])
    yield opened
    await opened.aclose()


def app(tenant: str = "acme", app_id: str = "helpdesk", **fields: object) -> App:
    return App(tenant=tenant, id=app_id, model="chat", **fields)  # type: ignore[arg-type]


def _schema_diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_migrations_build_exactly_the_declared_schema(store: Store) -> None:
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_schema_diff) == []


async def test_open_is_idempotent(
    store: Store, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    await store.tenants.create(Tenant("acme"), "test")
    url = store.engine.url.render_as_string(hide_password=False)
    schema = request.getfixturevalue("pg_schema") if url.startswith("postgresql") else ""
    again = await Store.open(url, schema=schema)
    try:
        assert [t.id for t in await again.tenants.list()] == ["acme"]
    finally:
        await again.aclose()


async def test_tenants(store: Store) -> None:
    created = await store.tenants.create(Tenant("acme", "Acme", 60, 1000), "tester")
    assert created.created_ms > 0
    assert await store.tenants.get("acme") == created
    with pytest.raises(AlreadyExists):
        await store.tenants.create(Tenant("acme"), "tester")
    with pytest.raises(NotFound):
        await store.tenants.get("nope")
    await store.tenants.create(Tenant("beta"), "tester")
    assert [t.id for t in await store.tenants.list()] == ["acme", "beta"]
    assert [t.id for t in await store.tenants.list(1, after="acme")] == ["beta"]


async def test_keys_resolve_by_hash_until_revoked(store: Store) -> None:
    await store.tenants.create(Tenant("acme", "Acme", 60, 1000), "tester")
    key, secret = await store.keys.create("acme", Role.DEVELOPER, "tester", rpm=5, tpm=50)
    assert secret.startswith(f"igk_{key.id}_") and len(secret) > 60
    assert secret.startswith(key.prefix) and len(key.prefix) < len(secret) - 30
    found = await store.keys.credential(keys.hash_secret(secret))
    assert found is not None
    assert (found.key.id, found.key.role, found.key.requests_per_minute) == (
        key.id,
        Role.DEVELOPER,
        5,
    )
    assert (found.tenant.id, found.tenant.tokens_per_minute) == ("acme", 1000)
    assert await store.keys.credential(keys.hash_secret(secret + "x")) is None
    revoked = await store.keys.revoke("acme", key.id, "tester")
    assert revoked.revoked_ms is not None
    assert (await store.keys.revoke("acme", key.id, "tester")).revoked_ms == revoked.revoked_ms
    assert await store.keys.credential(keys.hash_secret(secret)) is None
    assert [k.revoked_ms for k in await store.keys.list("acme")] == [revoked.revoked_ms]
    with pytest.raises(NotFound):
        await store.keys.create("nope", Role.USER, "tester")
    with pytest.raises(NotFound):  # a key of another tenant is not found
        await store.keys.revoke("beta", key.id, "tester")


async def test_secrets_are_never_stored(store: Store) -> None:
    await store.tenants.create(Tenant("acme"), "tester")
    _, secret = await store.keys.create("acme", Role.USER, "tester")
    async with store.engine.connect() as conn:
        dump = []
        for table in metadata.sorted_tables:
            dump += [str(row) for row in await conn.execute(table.select())]
    assert not any(secret in line for line in dump)
    assert any(keys.hash_secret(secret) in line for line in dump)  # the api_keys row only
    assert sum(keys.hash_secret(secret) in line for line in dump) == 1


async def test_bootstrap_happens_once(store: Store) -> None:
    secret = await store.keys.bootstrap_admin("default")
    assert secret is not None
    assert await store.keys.bootstrap_admin("default") is None
    found = await store.keys.credential(keys.hash_secret(secret))
    assert found is not None and (found.key.tenant, found.key.role) == ("default", Role.ADMIN)


async def test_apps_are_scoped_by_tenant(store: Store) -> None:
    spec = app(retrieval=Retrieval(("collections/docs",), 3, 0.2), params={"maxTokens": 16})
    created = await store.apps.create(spec, "tester")
    assert created.retrieval == spec.retrieval and created.params == {"maxTokens": 16}
    assert await store.apps.get("acme", "helpdesk") == created
    with pytest.raises(NotFound):
        await store.apps.get("beta", "helpdesk")
    with pytest.raises(AlreadyExists):
        await store.apps.create(spec, "tester")
    await store.apps.create(app("beta"), "tester")  # the same id in another tenant is another app
    await store.apps.create(app(app_id="alpha"), "tester")
    assert [a.id for a in await store.apps.list("acme", 10)] == ["alpha", "helpdesk"]
    assert [a.id for a in await store.apps.list("acme", 10, after="alpha")] == ["helpdesk"]
    updated = await store.apps.update(app(display_name="Help"), "tester")
    assert updated.display_name == "Help" and updated.created_ms == created.created_ms
    with pytest.raises(NotFound):
        await store.apps.update(app("gamma"), "tester")
    with pytest.raises(NotFound):
        await store.apps.delete("gamma", "helpdesk", "tester")
    await store.apps.delete("acme", "helpdesk", "tester")
    assert (await store.apps.get("beta", "helpdesk")).tenant == "beta"


async def test_rerank_settings_are_kept_and_apps_saved_before_them_do_not_rerank(
    store: Store,
) -> None:
    reranking = Retrieval(("collections/docs",), 3, 0.0, rerank=True, rerank_top_n=200)
    await store.apps.create(app(retrieval=reranking), "tester")
    assert (await store.apps.get("acme", "helpdesk")).retrieval == reranking
    old = json.dumps({"collections": ["collections/docs"], "k": 3, "score_threshold": 0.2})
    async with store.engine.begin() as conn:
        await conn.execute(update(apps).values(retrieval=old))
    loaded = (await store.apps.get("acme", "helpdesk")).retrieval
    assert loaded == Retrieval(("collections/docs",), 3, 0.2, rerank=False, rerank_top_n=0)


async def test_conversations_keep_history_per_tenant_and_app(store: Store) -> None:
    await store.turns.append(
        "acme", "helpdesk", "c1", [Turn("user", "hi"), Turn("assistant", "hello")]
    )
    await store.turns.append("acme", "helpdesk", "c1", [Turn("user", "more")])
    assert await store.turns.history("acme", "helpdesk", "c1") == [
        Turn("user", "hi"), Turn("assistant", "hello"), Turn("user", "more"),
    ]  # fmt: skip
    for tenant, app_id in (("beta", "helpdesk"), ("acme", "other")):
        with pytest.raises(NotFound):
            await store.turns.history(tenant, app_id, "c1")


def usage(
    ts_s: int, tenant: str = "acme", app_id: str = "", model: str = "chat", **kw: object
) -> UsageRecord:
    fields: dict[str, object] = {
        "key_id": "k", "deployment": "chat-a", "method": "/m", "input_tokens": 3,
        "output_tokens": 8, "latency_ms": 1, "status": "OK",
    }  # fmt: skip
    fields.update(kw)
    return UsageRecord(ts_s * 1000, tenant, app=app_id, model=model, **fields)  # type: ignore[arg-type]


async def test_usage_totals_by_group_and_bucket(store: Store) -> None:
    await store.usage.add([
        usage(0), usage(30, app_id="helpdesk"), usage(61, status="UNAVAILABLE", output_tokens=0),
        usage(62, tenant="beta", model="embed", input_tokens=5, output_tokens=0),
    ])  # fmt: skip
    rows = await store.usage.query(UsageQuery(0, 120_000, ("tenant",), 60))
    got = [(r.bucket_start_ms, dict(r.group), r.requests, r.input_tokens, r.output_tokens, r.errors)
           for r in rows]  # fmt: skip
    assert got == [
        (0, {"tenant": "acme"}, 2, 6, 16, 0),
        (60_000, {"tenant": "acme"}, 1, 3, 0, 1),
        (60_000, {"tenant": "beta"}, 1, 5, 0, 0),
    ]
    [only] = await store.usage.query(UsageQuery(0, 120_000, (), 0, tenant="acme"))
    assert (only.bucket_start_ms, only.requests, only.input_tokens, only.output_tokens) == (
        0,
        3,
        9,
        16,
    )
    by_app = await store.usage.query(UsageQuery(0, 60_000, ("app", "model"), 0, tenant="acme"))
    assert [(dict(r.group), r.requests) for r in by_app] == [
        ({"app": "", "model": "chat"}, 1), ({"app": "helpdesk", "model": "chat"}, 1),
    ]  # fmt: skip
    with pytest.raises(InvalidArgument, match="group_by"):
        await store.usage.query(UsageQuery(0, 1, ("region",), 0))


async def test_a_flush_waits_for_the_batch_underway_and_a_cancelled_one_is_kept() -> None:
    class SlowWriter:
        def __init__(self) -> None:
            self.written: list[UsageRecord] = []
            self.gate = asyncio.Event()

        async def add(self, records: Sequence[UsageRecord]) -> None:
            await self.gate.wait()
            self.written += records

    writer = SlowWriter()
    recorder = UsageRecorder(writer)
    first = UsageRecord(1, "t", "", "", "m", "d", "x", 1, 1, 1, "OK")
    recorder.record(first)
    underway = asyncio.create_task(recorder.flush())  # takes `first`, then waits
    await asyncio.sleep(0)
    second = first._replace(ts_ms=2)
    recorder.record(second)
    mine = asyncio.create_task(recorder.flush())
    await asyncio.sleep(0.01)
    assert not mine.done()  # it waits for the batch that holds `first`
    writer.gate.set()
    await asyncio.gather(underway, mine)
    assert writer.written == [first, second]  # both stored when `mine` returned

    writer.gate.clear()
    recorder.record(first)
    cancelled = asyncio.create_task(recorder.flush())
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    writer.gate.set()
    await recorder.flush()  # the cancelled batch was kept, and goes now
    assert writer.written == [first, second, first]
