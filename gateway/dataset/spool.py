"""An upload's temporary file, written off the event loop and capped in size.

Disk calls (mkdir, mkstemp, write, close, unlink) run on worker threads, so a
slow or full disk stalls only the upload that meets it, never the other RPCs
on the loop. Small pieces are gathered and written together, so a stream of
64 KiB messages costs one thread hop per MiB rather than one per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO

from indexer.errors import InvalidInput

_WRITE_BYTES = 1024 * 1024  # gather this much before a thread hop


class Spool:
    """Not safe for concurrent use: one upload awaits one call at a time.
    Cancelling a write or discard leaves the worker thread to finish its call;
    `discard` removes the file however the upload ended."""

    def __init__(self, file: IO[bytes], path: Path, limit: int) -> None:
        self.path = path
        self.size = 0
        self._file = file
        self._limit = limit
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    @classmethod
    async def create(cls, directory: Path, limit: int) -> Spool:
        """A new empty file under `directory` (made if missing) that takes at
        most `limit` bytes."""
        file, path = await asyncio.to_thread(_create, directory)
        return cls(file, path, limit)

    async def write(self, data: bytes) -> None:
        """Append `data`; past the limit, raise InvalidInput("upload") and
        write nothing more (the caller discards the file)."""
        self.size += len(data)
        if self.size > self._limit:
            raise InvalidInput(
                "upload", f"larger than {self._limit} bytes (dataset.max_upload_bytes)"
            )
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= _WRITE_BYTES:
            await self._flush()

    async def close(self) -> None:
        """Write what is gathered and close the file (it stays, for reading)."""
        await self._flush()
        await asyncio.to_thread(self._file.close)

    async def discard(self) -> None:
        """Close and remove the file. Idempotent."""
        await asyncio.to_thread(_remove, self._file, self.path)

    async def _flush(self) -> None:
        pieces, self._pending, self._pending_bytes = self._pending, [], 0
        if pieces:
            await asyncio.to_thread(self._file.writelines, pieces)


def _create(directory: Path) -> tuple[IO[bytes], Path]:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
    return os.fdopen(fd, "wb"), Path(name)


def _remove(file: IO[bytes], path: Path) -> None:
    with contextlib.suppress(OSError):  # e.g. a full disk on the last flush: it goes anyway
        file.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
