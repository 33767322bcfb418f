"""What a fake upstream does on its next calls, and what it saw."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Script:
    """The behaviour of a fake upstream, changed by tests between calls."""

    tokens: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " fake"])
    input_tokens: int = 7
    status: int = 200  # an HTTP status (gRPC fakes translate it) to fail with
    retry_after: str | None = None  # sent with an error status
    error_message: str | None = None  # the error body's message (default: "fake error N")
    delay_s: float = 0.0  # before the response starts
    token_delay_s: float = 0.0  # between streamed tokens
    first_token_delay_s: float = 0.0  # streams: after the role chunk, before the first token
    # Streams: after the first token, wait for this before sending the rest (a
    # test sets it once the first token has reached its client).
    hold_after_first: asyncio.Event | None = None
    # Streams: after the role chunk, wait for this before the first token (a test
    # sets it once the gateway's response headers have reached its client).
    hold_before_first: asyncio.Event | None = None
    cut_after: int | None = None  # streams: drop the connection after this many tokens
    error_after: tuple[int, str] | None = None  # streams: an in-band error event (tokens, type)
    finish: str = "stop"  # unified: stop, length, tool_calls
    tool_call: tuple[str, str, str] | None = None  # (id, name, JSON arguments)
    dimensions: int = 4


@dataclass
class Observed:
    """What the fake saw: request bodies, and calls the client abandoned."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # the same, as the bytes received
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    disconnects: int = 0  # responses the client closed or cancelled before their end
    # False for a fake that serves a benchmark: nobody reads what it saw, and
    # keeping every request's dicts made the collector's full passes over them
    # stall the fake 30-170 ms at a time (bench/RESULTS.md, issue 15).
    keep: bool = True
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def called(
        self, path: str, headers: dict[str, str], body: dict[str, Any] | None, raw: bytes = b""
    ) -> None:
        """One call: what it asked for (method and path, or RPC and model), its
        headers or metadata, and its body when it has one."""
        if not self.keep:
            return
        self.paths.append(path)
        self.headers.append(headers)
        if body is not None:
            self.saw(body, raw)

    def saw(self, body: dict[str, Any], raw: bytes = b"") -> None:
        if not self.keep:
            return
        self.requests.append(body)
        self.bodies.append(raw)
        self._changed.set()

    def disconnected(self) -> None:
        self.disconnects += 1
        self._changed.set()

    async def wait(self, done: Callable[[Observed], bool]) -> None:
        """Return once `done(self)` holds (callers bound the wait)."""
        while not done(self):
            self._changed.clear()
            await self._changed.wait()

    async def wait_disconnects(self, count: int) -> None:
        await self.wait(lambda o: o.disconnects >= count)


def vector(text: str, index: int, dimensions: int) -> list[float]:
    """A deterministic embedding: tests check order and values."""
    return [float(len(text) + index), float(index), *[0.5] * (dimensions - 2)]
