"""Usage records: batch inserts and grouped totals. Not audited: `add` runs
in one transaction of its own, outside the shared write path (no write lock,
no retry); cancelling it rolls it back whole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import BigInteger, case, func, literal, select

from gateway.apps.model import USAGE_GROUPS, UsageQuery, UsageRecord, UsageRow
from gateway.apps.store.db import Database
from gateway.apps.tables import usage
from gateway.errors import InvalidArgument

_COLUMN = {"key": "key_id"}  # a grouping's column, where the names differ


class UsageWriter(Protocol):
    """What the usage recorder writes to."""

    async def add(self, records: Sequence[UsageRecord]) -> None:
        """Insert the records in one transaction: all or none. Not idempotent."""
        ...


class UsageReader(Protocol):
    """What the App service answers QueryUsage from."""

    async def query(self, q: UsageQuery) -> list[UsageRow]:
        """Totals per bucket and group; InvalidArgument for an unknown grouping
        or a negative bucket."""
        ...


class Usage:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, records: Sequence[UsageRecord]) -> None:
        """One batch insert. The records go to the driver as they are (tuples in
        column order): SQLAlchemy's per-row processing would cost several times
        the insert on a batch of thousands."""
        if not records:
            return
        async with self._db.engine.begin() as conn:
            await conn.exec_driver_sql(_usage_insert(conn.dialect.paramstyle), list(records))

    async def query(self, q: UsageQuery) -> list[UsageRow]:
        bad = [g for g in q.group_by if g not in USAGE_GROUPS]
        if bad:
            raise InvalidArgument("group_by", f"unknown grouping {bad[0]!r}")
        if q.bucket_s < 0:
            raise InvalidArgument("bucket_seconds", "must be >= 0")
        width = q.bucket_s * 1000
        start = literal(q.start_ms, BigInteger)
        bucket = ((usage.c.ts_ms // width) * width if width else start).label("bucket")
        groups = [usage.c[_COLUMN.get(g, g)] for g in q.group_by]
        errors = func.sum(case((usage.c.status != "OK", 1), else_=0))
        query = (
            select(
                bucket, *(c.label(g) for c, g in zip(groups, q.group_by, strict=True)),
                func.count().label("requests"),
                func.sum(usage.c.input_tokens).label("input_tokens"),
                func.sum(usage.c.output_tokens).label("output_tokens"),
                errors.label("errors"), func.sum(usage.c.cost_nanos).label("cost_nanos"),
            )
            .where(usage.c.ts_ms >= q.start_ms, usage.c.ts_ms < q.end_ms)
            .group_by(bucket, *groups)
            .order_by(bucket, *groups)
        )  # fmt: skip
        if q.tenant is not None:
            query = query.where(usage.c.tenant == q.tenant)
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(query)
            return [
                UsageRow(
                    int(r.bucket),
                    {g: r._mapping[g] for g in q.group_by},
                    int(r.requests),
                    int(r.input_tokens or 0),
                    int(r.output_tokens or 0),
                    int(r.errors or 0),
                    int(r.cost_nanos or 0),
                )
                for r in rows
            ]


def _usage_insert(paramstyle: str) -> str:
    names = UsageRecord._fields
    marks = {
        "qmark": ["?"] * len(names),
        "numeric_dollar": [f"${i}" for i in range(1, len(names) + 1)],
        "format": ["%s"] * len(names),
    }[paramstyle]
    return f"INSERT INTO usage ({', '.join(names)}) VALUES ({', '.join(marks)})"
