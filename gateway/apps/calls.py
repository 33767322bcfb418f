"""The metered call running in this task: the access interceptor binds a
`Call` around each model-consuming RPC (gateway/apps/metering.py), and code
inside it (the App service's chat) fills in what the wire does not carry."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Call:
    app: str = ""
    model: str = ""
    deployment: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    usage_seen: bool = False  # the upstream's counts arrived (a cut stream has none)
    chunks: int = 0  # text chunks streamed: a cut stream's output, one token each
    cached: bool = False  # answered from the gateway's request cache: no upstream cost


_current: ContextVar[Call | None] = ContextVar("infergate_call", default=None)


def current_call() -> Call | None:
    """The metered call running in this task, if any."""
    return _current.get()


def bind(call: Call) -> Any:
    return _current.set(call)


def unbind(token: Any) -> None:
    _current.reset(token)
