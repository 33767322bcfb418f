"""Who is calling: the principal an RPC runs as.

The auth interceptor (issue #8) resolves a principal from the caller's
`authorization` metadata and binds it for the duration of the handler; the
REST shim runs RPCs through the same interceptors, so both see the same
principal. Every tenant-owned object (collections, tasks, apps, usage) is
scoped by `current().tenant`. With auth off, every call runs as `ANONYMOUS`.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass


class Role(enum.IntEnum):
    """Ordered: a role may do everything the roles below it may."""

    USER = 1  # calls apps and models
    DEVELOPER = 2  # manages its tenant's apps and datasets
    ADMIN = 3  # manages tenants, keys and config


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    role: Role
    key_id: str | None = None  # None: not authenticated by a key


DEFAULT_TENANT = "default"
ANONYMOUS = Principal(DEFAULT_TENANT, Role.ADMIN)

_current: ContextVar[Principal] = ContextVar("infergate_principal", default=ANONYMOUS)


def current() -> Principal:
    """The principal of the RPC running in this task."""
    return _current.get()


def bind(principal: Principal) -> Token[Principal]:
    """Like `bound`, without a context manager's cost, for the per-call hot path:
    pair every bind with `unbind(token)` in the same context."""
    return _current.set(principal)


def unbind(token: Token[Principal]) -> None:
    _current.reset(token)


@contextlib.contextmanager
def bound(principal: Principal) -> Iterator[Principal]:
    """Run the enclosed code as `principal`."""
    token = _current.set(principal)
    try:
        yield principal
    finally:
        _current.reset(token)
