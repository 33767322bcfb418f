"""The audit log's hash chain.

Each event's hash covers its own fields and the previous event's hash, so
changing, removing or reordering any stored event breaks every hash after it.
Cutting events off the end leaves a valid, shorter chain: the `Anchor` keeps
the newest head this host wrote outside the store (a file in the data dir),
and `verify` checks the log still reaches it. (A tamperer who can rewrite the
store and that file alike is out of reach of both.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from gateway.apps.model import AuditEvent

GENESIS = "0" * 64
HEAD_SEQUENCE = Gauge(
    "infergate_audit_head_sequence",
    "The newest audit event this process wrote (a decrease means the log lost its tail)",
    multiprocess_mode="max",
)

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
class Head:
    seq: int
    hash: str


class Anchor:
    """The head kept outside the store. `advance` runs after a commit that
    appended events and only ever moves it forward: processes sharing the file
    take a lock beside it for the read and the replace, and each write lands
    whole (written, synced, then renamed over it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> Head | None:
        """None when there is none yet; ValueError when the file is not one."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.path}: not an audit head ({exc})") from exc
        return Head(int(data["seq"]), str(data["hash"]))

    def advance(self, head: Head) -> None:
        """Raises OSError when the file cannot be written (the caller logs it:
        the change it follows has committed either way)."""
        HEAD_SEQUENCE.set(head.seq)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = self.read()
            except ValueError:
                current = None  # replaced by a good one
            if current is None or current.seq < head.seq:
                self._write(head)

    def _write(self, head: Head) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".audit-head.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"seq": head.seq, "hash": head.hash}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    events: int
    bad_seq: int | None = None
    reason: str = ""


def verify(events: Iterable[AuditEvent], anchor: Head | None = None) -> Verdict:
    """Walk the chain in sequence order; the first broken link is reported.
    With `anchor`, the chain must also reach it: a log cut short of it, or one
    whose event at its sequence has another hash, is broken there."""
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
        if anchor is not None and event.seq == anchor.seq and event.hash != anchor.hash:
            return Verdict(False, count, event.seq, "differs from the anchored head")
        prev, expected_seq = event.hash, expected_seq + 1
    if anchor is not None and count < anchor.seq:
        reason = f"missing: the log ends at {count}, the anchored head is {anchor.seq} (truncated)"
        return Verdict(False, count, count + 1, reason)
    return Verdict(True, count)
