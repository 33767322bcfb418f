"""The audit log's hash chain.

Each event's hash covers its own fields and the previous event's hash, so
changing, removing or reordering any stored event breaks every hash after it.
(It detects tampering by someone who cannot also recompute the chain from the
tampered point on; anchoring the head hash elsewhere closes that gap.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.apps.model import AuditEvent

GENESIS = "0" * 64

# Store.audit.append's shape (actor, action, resource, before, after): what
# code outside the App layer is handed to record its changes.
AppendAudit = Callable[
    [str, str, str, dict[str, Any] | None, dict[str, Any] | None], Awaitable[None]
]


def canonical(value: Mapping[str, Any] | None) -> str:
    """The one JSON text of a before/after value that hashes and storage share."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(
    seq: int, ts_ms: int, actor: str, action: str, resource: str, before: str, after: str,
    prev_hash: str,
) -> str:  # fmt: skip
    body = json.dumps(
        [seq, ts_ms, actor, action, resource, before, after, prev_hash],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    events: int
    bad_seq: int | None = None
    reason: str = ""


def verify(events: Iterable[AuditEvent]) -> Verdict:
    """Walk the chain in sequence order; the first broken link is reported."""
    prev, expected_seq, count = GENESIS, 1, 0
    for event in events:
        count += 1
        if event.seq != expected_seq:
            return Verdict(False, count, event.seq, f"expected sequence {expected_seq}")
        if event.prev_hash != prev:
            return Verdict(False, count, event.seq, "prev_hash does not match the previous event")
        digest = event_hash(
            event.seq, event.ts_ms, event.actor, event.action, event.resource,
            canonical(event.before), canonical(event.after), event.prev_hash,
        )  # fmt: skip
        if digest != event.hash:
            return Verdict(False, count, event.seq, "contents do not match the stored hash")
        prev, expected_seq = event.hash, expected_seq + 1
    return Verdict(True, count)
