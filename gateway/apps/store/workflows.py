"""Workflows, scoped by tenant: every save is a new version (audited, through
the shared write path), one version may be published; and the runs' records
(not audited, written in batches by `Runs`, purged after retention)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.apps.store.db import Database, append_event, now_ms
from gateway.apps.tables import workflow_runs, workflow_versions, workflows
from gateway.apps.workflows.model import RunRecord, Version, Workflow
from gateway.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable

log = logging.getLogger("infergate.store")
MAX_QUEUED = 10_000  # run records kept while the store cannot be written
MAX_ERROR_CHARS = 8192


class Workflows:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, tenant: str, workflow_id: str, display_name: str, description: str,
        definition: Mapping[str, Any], actor: str,
    ) -> Workflow:  # fmt: skip
        """Version 1; AlreadyExists for an id this tenant has."""

        async def work(conn: AsyncConnection) -> Workflow:
            if await _get(conn, tenant, workflow_id) is not None:
                raise AlreadyExists(f"workflow {workflow_id!r}")
            when = now_ms()
            row: dict[str, Any] = {
                "tenant": tenant, "id": workflow_id, "display_name": display_name,
                "description": description, "latest_version": 1, "published_version": 0,
                "created_ms": when, "updated_ms": when,
            }  # fmt: skip
            await conn.execute(workflows.insert().values(**row))
            await _add_version(conn, tenant, workflow_id, 1, definition, actor, when)
            await append_event(
                conn, actor, "CreateWorkflow", _name(tenant, workflow_id), None,
                {**row, "definition": dict(definition)},
            )  # fmt: skip
            return Workflow(**row)

        return await self._db.write(work)

    async def save(
        self, tenant: str, workflow_id: str, definition: Mapping[str, Any], actor: str,
        display_name: str | None = None, description: str | None = None,
    ) -> Workflow:  # fmt: skip
        """A new version (latest + 1); NotFound for a missing workflow."""

        async def work(conn: AsyncConnection) -> Workflow:
            old = await _get(conn, tenant, workflow_id)
            if old is None:
                raise NotFound(f"workflow {workflow_id!r}")
            when, version = now_ms(), old.latest_version + 1
            changes = {
                "latest_version": version, "updated_ms": when,
                "display_name": old.display_name if display_name is None else display_name,
                "description": old.description if description is None else description,
            }  # fmt: skip
            await conn.execute(_where(workflows.update(), tenant, workflow_id).values(**changes))
            await _add_version(conn, tenant, workflow_id, version, definition, actor, when)
            await append_event(
                conn, actor, "UpdateWorkflow", _name(tenant, workflow_id),
                {"version": old.latest_version},
                {"version": version, "definition": dict(definition)},
            )  # fmt: skip
            return Workflow(**{**_row(old), **changes})

        return await self._db.write(work)

    async def publish(self, tenant: str, workflow_id: str, version: int, actor: str) -> Workflow:
        """Point the workflow at `version`; NotFound for a missing one."""

        async def work(conn: AsyncConnection) -> Workflow:
            old = await _get(conn, tenant, workflow_id)
            if old is None:
                raise NotFound(f"workflow {workflow_id!r}")
            if not 1 <= version <= old.latest_version:
                raise NotFound(f"version {version} of workflow {workflow_id!r}")
            when = now_ms()
            await conn.execute(
                _where(workflows.update(), tenant, workflow_id).values(
                    published_version=version, updated_ms=when
                )
            )
            await append_event(
                conn, actor, "PublishWorkflow", _name(tenant, workflow_id),
                {"published_version": old.published_version}, {"published_version": version},
            )  # fmt: skip
            return Workflow(**{**_row(old), "published_version": version, "updated_ms": when})

        return await self._db.write(work)

    async def delete(self, tenant: str, workflow_id: str, actor: str) -> None:
        """The workflow, its versions and its runs; NotFound for a missing one."""

        async def work(conn: AsyncConnection) -> None:
            old = await _get(conn, tenant, workflow_id)
            if old is None:
                raise NotFound(f"workflow {workflow_id!r}")
            await conn.execute(_where(workflows.delete(), tenant, workflow_id))
            for table in (workflow_versions, workflow_runs):
                await conn.execute(
                    delete(table).where(table.c.tenant == tenant, table.c.workflow == workflow_id)
                )
            await append_event(
                conn, actor, "DeleteWorkflow", _name(tenant, workflow_id), _row(old), None
            )

        await self._db.write(work)

    async def get(self, tenant: str, workflow_id: str) -> Workflow:
        async with self._db.engine.connect() as conn:
            found = await _get(conn, tenant, workflow_id)
        if found is None:
            raise NotFound(f"workflow {workflow_id!r}")
        return found

    async def version(self, tenant: str, workflow_id: str, version: int) -> Version:
        """One version; NotFound for a missing workflow or version."""
        v = workflow_versions.c
        query = select(workflow_versions).where(
            v.tenant == tenant, v.workflow == workflow_id, v.version == version
        )
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"version {version} of workflow {workflow_id!r}")
        return _version(row._asdict())

    async def versions(
        self, tenant: str, workflow_id: str, limit: int, before: int = 0
    ) -> list[Version]:
        """Newest first, versions below `before` (0: from the newest)."""
        await self.get(tenant, workflow_id)  # NotFound
        v = workflow_versions.c
        query = select(workflow_versions).where(v.tenant == tenant, v.workflow == workflow_id)
        if before:
            query = query.where(v.version < before)
        query = query.order_by(v.version.desc()).limit(limit)
        async with self._db.engine.connect() as conn:
            return [_version(r._asdict()) for r in await conn.execute(query)]

    async def list(self, tenant: str, limit: int, after: str = "") -> list[Workflow]:
        query = (
            select(workflows)
            .where(workflows.c.tenant == tenant, workflows.c.id > after)
            .order_by(workflows.c.id)
            .limit(limit)
        )
        async with self._db.engine.connect() as conn:
            return [Workflow(**r._asdict()) for r in await conn.execute(query)]


class Runs:
    """Run records, one row per run, written in batches off the hot path: a
    run's record is queued when it starts and again when it ends, and a
    background writer upserts what is queued every `interval_s` in one
    transaction (a run that starts and ends in between is written once).
    Reads write the queue first, so this process reads its own runs; other
    processes see them within `interval_s`. A crash loses at most the queued
    records, as it does usage records."""

    def __init__(self, db: Database, interval_s: float = 0.1) -> None:
        self._db = db
        self._interval_s = interval_s
        self._queued: dict[tuple[str, str], RunRecord] = {}
        self._flushing = asyncio.Lock()
        self._writer: asyncio.Task[None] | None = None

    def start_writer(self) -> None:
        """Write the queue every `interval_s` until `aclose`."""
        self._writer = asyncio.create_task(self._write_forever())

    async def aclose(self) -> None:
        """Stop the writer, then write what is queued."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        await self.flush()

    async def start(self, run: RunRecord) -> None:
        await self._queue(run)

    async def finish(self, run: RunRecord) -> None:
        await self._queue(run)

    async def _queue(self, run: RunRecord) -> None:
        self._queued[(run.tenant, run.id)] = run
        if self._writer is None:  # no background writer (a tool, a test): write now
            await self.flush()

    async def flush(self) -> None:
        """Write what is queued, in one transaction. When that fails, each
        record is tried alone: one the store refuses is logged and dropped (it
        must not hold back every other run); when none can be written (the
        store is down) they stay queued, behind anything newer for the same
        run, up to MAX_QUEUED, and the error propagates."""
        async with self._flushing:
            if not self._queued:
                return
            batch, self._queued = self._queued, {}
            try:
                await self._write([_run_row(run) for run in batch.values()])
                return
            except Exception:
                if len(batch) == 1:
                    self._requeue(batch)
                    raise
            failed: dict[tuple[str, str], RunRecord] = {}
            for key, run in batch.items():
                try:
                    await self._write([_run_row(run)])
                except Exception:
                    failed[key] = run
            if len(failed) == len(batch):
                self._requeue(failed)
                raise Unavailable("the store refused every queued workflow run record")
            for tenant, run_id in failed:
                log.error("dropped the record of workflow run %s/%s: the store refuses it",
                          tenant, run_id)  # fmt: skip

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(_upsert(conn.dialect.name), rows)

        # Through the process's one write lock: SQLite has one writer, and
        # connections racing for it stall each other (bench/RESULTS.md).
        await self._db.write(work)

    def _requeue(self, batch: dict[tuple[str, str], RunRecord]) -> None:
        for key, run in batch.items():
            self._queued.setdefault(key, run)  # a newer record of the run wins
        while len(self._queued) > MAX_QUEUED:  # the store has been down long
            self._queued.pop(next(iter(self._queued)))

    async def _write_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.flush()
            except Exception:
                log.exception("could not write %d workflow run records", len(self._queued))

    async def _flushed(self) -> None:
        """Write the queue before a read; a read still answers when it cannot."""
        try:
            await self.flush()
        except Exception:
            log.exception("could not write the queued workflow run records before a read")

    async def get(self, tenant: str, run_id: str) -> RunRecord:
        await self._flushed()
        query = select(workflow_runs).where(
            workflow_runs.c.tenant == tenant, workflow_runs.c.id == run_id
        )
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"run {run_id!r}")
        return _run(row._asdict())

    async def list(
        self, tenant: str, workflow_id: str, limit: int, before: str = ""
    ) -> list[RunRecord]:
        """Newest first (run ids sort by start time); `before`: a run id."""
        await self._flushed()
        r = workflow_runs.c
        query = select(workflow_runs).where(r.tenant == tenant)
        if workflow_id:
            query = query.where(r.workflow == workflow_id)
        if before:
            if len(before) > 64:
                raise InvalidArgument("page_token", "not a token this service issued")
            query = query.where(r.id < before)
        query = query.order_by(r.id.desc()).limit(limit)
        async with self._db.engine.connect() as conn:
            return [_run(row._asdict()) for row in await conn.execute(query)]

    async def purge(self, older_than_ms: int) -> int:
        """Drop the records of runs started before `older_than_ms`; how many."""
        async with self._db.engine.begin() as conn:
            result = await conn.execute(
                delete(workflow_runs).where(workflow_runs.c.started_ms < older_than_ms)
            )
        return int(result.rowcount or 0)


# --- rows <-> domain ----------------------------------------------------------------------


def _name(tenant: str, workflow_id: str) -> str:
    return f"tenants/{tenant}/workflows/{workflow_id}"


def _where(stmt: Any, tenant: str, workflow_id: str) -> Any:
    return stmt.where(workflows.c.tenant == tenant, workflows.c.id == workflow_id)


async def _get(conn: AsyncConnection, tenant: str, workflow_id: str) -> Workflow | None:
    row = (await conn.execute(_where(select(workflows), tenant, workflow_id))).first()
    return None if row is None else Workflow(**row._asdict())


def _row(w: Workflow) -> dict[str, Any]:
    return {
        "tenant": w.tenant, "id": w.id, "display_name": w.display_name,
        "description": w.description, "latest_version": w.latest_version,
        "published_version": w.published_version, "created_ms": w.created_ms,
        "updated_ms": w.updated_ms,
    }  # fmt: skip


async def _add_version(
    conn: AsyncConnection, tenant: str, workflow_id: str, version: int,
    definition: Mapping[str, Any], actor: str, when: int,
) -> None:  # fmt: skip
    await conn.execute(
        workflow_versions.insert().values(
            tenant=tenant, workflow=workflow_id, version=version,
            definition=json.dumps(definition, sort_keys=True), actor=actor, created_ms=when,
        )
    )  # fmt: skip


def _version(row: dict[str, Any]) -> Version:
    return Version(
        row["tenant"], row["workflow"], row["version"], json.loads(row["definition"]),
        row["actor"], row["created_ms"],
    )  # fmt: skip


def _upsert(dialect: str) -> Any:
    """INSERT, or UPDATE the run's row when it is already there (SQLite, PostgreSQL)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(workflow_runs)
    keep = {"tenant", "id", "workflow", "version", "started_ms"}
    changed = {c.name: stmt.excluded[c.name] for c in workflow_runs.c if c.name not in keep}
    return stmt.on_conflict_do_update(index_elements=["tenant", "id"], set_=changed)


def _run_row(run: RunRecord) -> dict[str, Any]:
    return {
        "tenant": run.tenant, "id": run.id, "workflow": run.workflow, "version": run.version,
        "status": run.status, "inputs": json.dumps(run.inputs, default=str),
        "outputs": json.dumps(run.outputs, default=str),
        "nodes": json.dumps(list(run.nodes), default=str),
        # PostgreSQL text holds no NUL; the JSON columns escape theirs.
        "error": run.error.replace("\x00", "")[:MAX_ERROR_CHARS],
        "input_tokens": run.input_tokens, "output_tokens": run.output_tokens,
        "started_ms": run.started_ms, "finished_ms": run.finished_ms,
    }  # fmt: skip


def _run(row: dict[str, Any]) -> RunRecord:
    return RunRecord(
        row["tenant"], row["id"], row["workflow"], row["version"], row["status"],
        json.loads(row["inputs"]), json.loads(row["outputs"]), json.loads(row["nodes"]),
        row["error"], row["input_tokens"], row["output_tokens"], row["started_ms"],
        row["finished_ms"],
    )  # fmt: skip
