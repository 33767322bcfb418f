# ruff: noqa: F811
"""The audit log: every admin action recorded, the hash chain verifies, and
any modified, removed or reordered record is detected (store API and CLI)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY
from sqlalchemy import update

from gateway.apps.audit import Anchor, Head, verify
from gateway.apps.model import App, AuditEvent, Tenant
from gateway.apps.store import Store
from gateway.apps.tables import audit
from gateway.cli import main
from gateway.identity import Role

# The store fixtures (SQLite and PostgreSQL) are test_store's; tests take them by name.
from tests.gateway.apps.test_store import pg_schema, store, store_url  # noqa: F401


async def admin_actions(store: Store) -> str:
    await store.tenants.create(Tenant("acme", "Acme"), "tenants/default/keys/k1")
    key, _ = await store.keys.create("acme", Role.USER, "tenants/default/keys/k1", rpm=10)
    await store.apps.create(App("acme", "helpdesk", "chat"), "tenants/acme/keys/k2")
    await store.apps.update(App("acme", "helpdesk", "chat", "Help"), "tenants/acme/keys/k2")
    await store.keys.revoke("acme", key.id, "tenants/default/keys/k1")
    await store.apps.delete("acme", "helpdesk", "tenants/acme/keys/k2")
    return key.id


async def events(store: Store) -> list:  # type: ignore[type-arg]
    return [e async for e in store.audit.events(batch=2)]


async def test_every_admin_action_is_recorded_with_before_and_after(store: Store) -> None:
    key_id = await admin_actions(store)
    log = await events(store)
    assert [(e.seq, e.action, e.resource) for e in log] == [
        (1, "CreateTenant", "tenants/acme"),
        (2, "CreateApiKey", f"tenants/acme/keys/{key_id}"),
        (3, "CreateApp", "tenants/acme/apps/helpdesk"),
        (4, "UpdateApp", "tenants/acme/apps/helpdesk"),
        (5, "RevokeApiKey", f"tenants/acme/keys/{key_id}"),
        (6, "DeleteApp", "tenants/acme/apps/helpdesk"),
    ]
    assert log[0].actor == "tenants/default/keys/k1" and log[0].before is None
    assert log[3].before is not None and log[3].after is not None
    assert (log[3].before["display_name"], log[3].after["display_name"]) == ("", "Help")
    assert log[4].before["revoked_ms"] is None and log[4].after["revoked_ms"] > 0  # type: ignore[index]
    assert log[5].after is None
    assert all("hash" not in (e.after or {}) for e in log)  # key hashes stay out of the log
    assert [e.prev_hash for e in log[1:]] == [e.hash for e in log[:-1]]
    assert verify(log).ok and verify(log).events == 6
    assert [e.seq for e in await store.audit.list(0, 10, "tenants/acme/apps/helpdesk")] == [3, 4, 6]


@pytest.mark.parametrize(
    "tamper",
    [
        {"after": '{"id":"acme","display_name":"Evil"}'},
        {"actor": "someone else"},
        {"ts_ms": 1},
    ],
)
async def test_a_modified_record_is_detected(store: Store, tamper: dict[str, object]) -> None:
    await admin_actions(store)
    async with store.engine.begin() as conn:
        await conn.execute(update(audit).where(audit.c.seq == 3).values(**tamper))
    verdict = verify(await events(store))
    assert not verdict.ok and verdict.bad_seq == 3
    assert "hash" in verdict.reason


async def test_a_removed_or_reordered_record_is_detected(store: Store) -> None:
    await admin_actions(store)
    log = await events(store)
    assert verify(log[:2] + log[3:]).bad_seq == 4
    assert not verify([log[1], log[0], *log[2:]]).ok


async def test_concurrent_writers_keep_one_chain(store: Store, store_url: tuple[str, str]) -> None:
    other = await Store.open(store_url[0], schema=store_url[1])  # another process's store
    try:
        await asyncio.gather(
            *(s.tenants.create(Tenant(f"t{i}-{n}"), "w") for n, s in enumerate((store, other))
              for i in range(5))
        )  # fmt: skip
    finally:
        await other.aclose()
    log = await events(store)
    assert len(log) == 10 and verify(log).ok


def test_cli_verify_passes_then_names_the_tampered_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "models": {"chat": {"deployments": [{"name": "a", "provider": "mock", "model": "echo"}]}},
    }))  # fmt: skip
    assert (
        main(["keys", "create", "--tenant", "acme", "--role", "user", "--config", str(config)]) == 0
    )
    assert (
        main(["keys", "create", "--tenant", "acme", "--role", "admin", "--config", str(config)])
        == 0
    )
    capsys.readouterr()
    assert main(["audit", "verify", "--config", str(config)]) == 0
    assert "3 events, chain intact" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "data" / "infergate.db") as db:
        db.execute("UPDATE audit SET after = replace(after, 'user', 'admin') WHERE seq = 2")
    assert main(["audit", "verify", "--config", str(config)]) == 1
    assert "BROKEN at sequence 2" in capsys.readouterr().err


def test_cli_verify_catches_a_log_cut_short_of_its_anchored_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(data),
        "models": {"chat": {"deployments": [{"name": "a", "provider": "mock", "model": "echo"}]}},
    }))  # fmt: skip
    for role in ("user", "admin"):  # CreateTenant, then a CreateApiKey each
        assert (
            main(["keys", "create", "--tenant", "acme", "--role", role, "--config", str(config)])
            == 0
        )
    with sqlite3.connect(data / "infergate.db") as db:
        (head_hash,) = db.execute("SELECT hash FROM audit WHERE seq = 3").fetchone()
    assert json.loads((data / "audit-head.json").read_text()) == {"seq": 3, "hash": head_hash}
    assert REGISTRY.get_sample_value("infergate_audit_head_sequence") == 3
    capsys.readouterr()
    assert main(["audit", "verify", "--config", str(config)]) == 0
    assert "3 events, chain intact, up to the anchored head 3" in capsys.readouterr().out

    with sqlite3.connect(data / "infergate.db") as db:  # the tail cut off: what is left is whole
        db.execute("DELETE FROM audit WHERE seq = 3")
    assert verify([AuditEvent(*r) for r in _rows(data)]).ok  # the chain alone cannot tell
    assert main(["audit", "verify", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "BROKEN at sequence 3" in err and "the anchored head is 3 (truncated)" in err

    with sqlite3.connect(data / "infergate.db") as db:  # a different event put in its place
        db.execute("UPDATE audit SET seq = 3 WHERE seq = 2")
        db.execute("DELETE FROM audit WHERE seq = 1")
    assert main(["audit", "verify", "--config", str(config)]) == 1
    assert "BROKEN at sequence" in capsys.readouterr().err


def test_the_anchor_only_moves_forward(tmp_path: Path) -> None:
    anchor = Anchor(tmp_path / "head.json")
    assert anchor.read() is None
    anchor.advance(Head(5, "e"))
    anchor.advance(Head(4, "d"))  # another process that had not seen 5
    assert anchor.read() == Head(5, "e")
    log_of_five = verify([], Head(5, "e"))
    assert (log_of_five.ok, log_of_five.bad_seq) == (False, 1)


def _rows(data: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(data / "infergate.db") as db:
        rows = db.execute(
            "SELECT seq, ts_ms, actor, action, resource, before, after, prev_hash, hash"
            " FROM audit ORDER BY seq"
        ).fetchall()
    return [(*r[:5], json.loads(r[5]), json.loads(r[6]), *r[7:]) for r in rows]


async def test_a_write_stands_when_its_anchor_cannot_be_moved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the anchor's folder should be")
    store = await Store.open(
        f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", anchor=Anchor(blocked / "audit-head.json")
    )
    try:
        await store.tenants.create(Tenant("acme", "Acme"), "test")
        assert (await store.tenants.get("acme")).id == "acme"  # committed, and said so
    finally:
        await store.aclose()
    assert "could not move the audit anchor" in caplog.text
