"""Relay connections over the RPCs' page tokens.

A cursor names a position as (the page token that starts its page, items to
skip in it), so any edge's cursor can be resumed from, not only a page's last.
The last edge of a page that has more points at the next page (skip 0), so
paging forward from `endCursor` never re-reads items.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import strawberry

from gateway.graphql.errors import bad

T = TypeVar("T")
MAX_FIRST = 100
DEFAULT_FIRST = 20


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    node: T
    cursor: str


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo

    @strawberry.field(description="The edges' nodes, for clients that need no cursors")
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]


def _cursor(token: str, skip: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([token, skip]).encode()).decode()


def _position(cursor: str) -> tuple[str, int]:
    try:
        token, skip = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error, TypeError):
        raise bad("after: not a cursor this API issued") from None
    if not isinstance(token, str) or not isinstance(skip, int) or not 0 <= skip <= MAX_FIRST:
        raise bad("after: not a cursor this API issued")
    return token, skip


@dataclass(frozen=True, slots=True)
class Page:
    """What to ask the RPC for: `size` items from `token`, of which the first
    `skip` were already seen."""

    first: int
    token: str
    skip: int

    @classmethod
    def of(cls, first: int, after: str | None) -> Page:
        if not 1 <= first <= MAX_FIRST:
            raise bad(f"first: must be 1 to {MAX_FIRST}, got {first}")
        token, skip = _position(after) if after else ("", 0)
        return cls(first, token, skip)

    @property
    def size(self) -> int:
        return self.first + self.skip

    def connection(
        self, items: Sequence[Any], next_token: str, node: Callable[[Any], T]
    ) -> Connection[T]:
        kept = list(items)[self.skip : self.skip + self.first]
        edges = [
            Edge(node=node(item), cursor=_cursor(self.token, self.skip + i + 1))
            for i, item in enumerate(kept)
        ]
        if edges and next_token:
            edges[-1] = Edge(node=edges[-1].node, cursor=_cursor(next_token, 0))
        info = PageInfo(
            has_next_page=bool(next_token),
            has_previous_page=bool(self.token or self.skip),
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        )
        return Connection(edges=edges, page_info=info)
