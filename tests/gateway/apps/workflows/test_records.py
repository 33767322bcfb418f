"""Run records and secrets keys under faults: a record the store refuses does
not hold back the others, a NUL in an error is written, a task node cannot
queue a workflow run, concurrent first starts share one secrets key."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.apps.store import Store
from gateway.apps.store.secrets import load_key
from gateway.apps.workflows.document import DefinitionError
from gateway.apps.workflows.model import RunRecord
from gateway.apps.workflows.validate import load


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    opened = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}")
    yield opened
    await opened.aclose()


def record(run_id: str, **changes: Any) -> RunRecord:
    base = RunRecord("acme", run_id, "wf", 1, "succeeded", {"q": "x"}, started_ms=1)
    return dataclasses.replace(base, **changes)


async def test_a_record_the_store_refuses_does_not_hold_back_the_others(store: Store) -> None:
    runs = store.runs
    runs.start_writer()  # queue, as the gateway does
    await runs.start(record("a"))
    await runs.start(record("bad", inputs={"loop": float("nan")}))  # ok in JSON text...
    poisoned = record("worse")
    object.__setattr__(poisoned, "nodes", [object()])  # ...this is not JSON at all
    await runs.finish(dataclasses.replace(poisoned, nodes=[{"n": {1, 2}}]))
    await runs.finish(record("b", error="upstream said \x00 nothing"))
    await runs.aclose()
    listed = {r.id: r for r in await runs.list("acme", "wf", 10)}
    assert {"a", "b", "bad"} <= set(listed)
    assert listed["b"].error == "upstream said  nothing"  # NUL dropped: PostgreSQL refuses it
    assert runs._queued == {}  # nothing left behind


async def test_reads_answer_while_the_queue_cannot_be_written(store: Store) -> None:
    runs = store.runs
    runs.start_writer()
    await runs.start(record("a"))
    await runs.flush()
    original = runs._write

    async def broken(rows: list[dict[str, Any]]) -> None:
        raise OSError("disk full")

    runs._write = broken  # type: ignore[method-assign]
    await runs.finish(record("a", status="failed"))
    found = await runs.get("acme", "a")  # answers with what is stored
    assert found.status == "succeeded" and ("acme", "a") in runs._queued
    runs._write = original  # type: ignore[method-assign]
    await runs.aclose()
    assert (await runs.get("acme", "a")).status == "failed"


def test_a_task_node_cannot_queue_a_workflow_run() -> None:
    doc = {
        "nodes": [{"id": "start", "type": "start"},
                  {"id": "again", "type": "task", "config": {"type": "workflow.run",
                                                            "payload": {"workflow": "me"}}}],
        "edges": [{"from": "start", "to": "again"}],
    }  # fmt: skip
    with pytest.raises(DefinitionError) as caught:
        load(doc)
    (problem,) = caught.value.problems
    assert (problem.node, problem.field) == ("again", "config.type")
    assert "cannot be a task node's task" in problem.message


def test_concurrent_first_starts_share_one_secrets_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        keys.append(load_key("", tmp_path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and keys[0] == (tmp_path / "secrets.key").read_bytes().strip()
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.key"]  # no spare files left


async def test_the_secrets_key_is_made_when_a_secret_is_first_kept(tmp_path: Path) -> None:
    from gateway.apps.config import AppsConfig, StoreConfig
    from gateway.apps.store import open_store

    config = AppsConfig(store=StoreConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'db'}"))
    store = await open_store(config, tmp_path)
    try:
        assert not (tmp_path / "secrets.key").exists()  # a start makes no key
        await store.secrets.put("acme", "token", "s3cr3t", "test")
        assert (tmp_path / "secrets.key").exists()
        assert await store.secrets.reveal("acme", ["token"]) == {"token": "s3cr3t"}
    finally:
        await store.aclose()
