"""Hot reload: on a change of the config file (or SIGHUP) validate it, build a
new Router snapshot that inherits the live state, and swap one reference.

Calls already running finish on the snapshot they started with; providers the
new snapshot dropped are closed once the old one is idle. An invalid file is
rejected with a logged reason and a metric, and the old snapshot keeps serving.
Server settings (ports, limits) need a restart: a change there is logged.
With the App layer, every reload, applied or rejected, is an audit event
(actor `system:<source>`; before/after name the model aliases and their
deployments, never options or keys).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import watchfiles

from gateway import metrics
from gateway.apps.audit import AppendAudit
from gateway.cache import open_cache
from gateway.config import ServerConfig, load_config
from gateway.live import LiveRouter
from router.config import ConfigError, RouterConfig
from router.provider import Provider
from router.request_cache import RequestCache
from router.router import ProviderFactory, Router

log = logging.getLogger("infergate.reload")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


class Reloader:
    """Reloads `path` into `live`. `server` is the running server's settings
    (a change there is only logged); `audit` records every attempt."""

    def __init__(
        self,
        live: LiveRouter,
        path: Path,
        factory: ProviderFactory,
        *,
        server: ServerConfig,
        audit: AppendAudit | None = None,
        idle_wait_s: float = 600.0,
    ) -> None:
        self._live = live
        # Not resolved: a symlink's target may be swapped (a Kubernetes ConfigMap).
        self._path = path.absolute()
        self._seen = _fingerprint(self._path)  # what the live snapshot was loaded from
        self._factory = factory
        self._server = server
        self._append_audit = audit
        self._idle_wait_s = idle_wait_s
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def reload(self, source: str = "file") -> bool:
        """Load, validate and swap; False (old config kept) when the file is bad.
        `source` (file, sighup) names the audit event's actor."""
        async with self._lock:
            self._seen = await asyncio.to_thread(_fingerprint, self._path)
            live = self._live
            summary = _summary(live.router.config)
            old, before = live.router, live.cache
            cache = before  # replaced only when the cache config changed
            try:
                config = await asyncio.to_thread(load_config, self._path)
                if config.cache != old.config.cache:
                    cache = open_cache(config.cache)  # the swap gives it the embedder
                new = Router(
                    config, self._factory, previous=old, cache=cache, clock=old.clock, rng=old.rng
                )
            except ConfigError as exc:
                metrics.RELOADS.labels("rejected").inc()
                log.error("config reload rejected, still serving the previous config: %s", exc)
                for provider in exc.unused:  # built for the rejected config
                    await provider.aclose()
                if cache is not None and cache is not before:
                    await cache.aclose()
                rejected = {"path": str(self._path), "error": _redacted(exc)}
                await self._audit(source, "RejectConfigReload", summary, rejected)
                return False
            if config.server != self._server:
                log.warning("config reload: server settings change only on restart")
            live.swap(new, cache)
            if cache is not None:
                cache.retain(new.scopes.values())  # aliases whose config changed
            metrics.RELOADS.labels("ok").inc()
            log.info("config reloaded from %s: %d models", self._path, len(config.models))
            await self._audit(source, "ReloadConfig", summary, _summary(config))
            stale_cache = None if cache is before else before
            task = asyncio.create_task(self._retire(old, new.retired, stale_cache))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            return True

    async def watch(self) -> None:
        """Reload when what the config path resolves to changes: its content (an
        edit, an editor's atomic replace) or its target (a Kubernetes ConfigMap
        swaps the `..data` symlink it points through). Nothing else in the
        directory is looked at (a log file beside the config, say), and a
        change that leaves the content as it was (`touch`) reloads nothing."""
        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # a line per event
        folders = {self._path.parent}
        target = await asyncio.to_thread(self._path.resolve)
        if not target.parent.is_relative_to(self._path.parent):
            folders.add(target.parent)  # a symlink to a file elsewhere: its edits happen there
        names = {self._path.name, target.name}

        def concerns(change: watchfiles.Change, path: str) -> bool:
            # The file (under either name), or the `..`-named entries through
            # which a ConfigMap volume's files are symlinked.
            name = Path(path).name
            return name in names or name.startswith("..")

        async for _ in watchfiles.awatch(
            *folders, watch_filter=concerns, debounce=200, recursive=False
        ):
            if await asyncio.to_thread(_fingerprint, self._path) != self._seen:
                await self.reload("file")

    async def _audit(
        self, source: str, action: str, before: dict[str, Any], after: dict[str, Any]
    ) -> None:
        if self._append_audit is None:
            return
        try:
            await self._append_audit(f"system:{source}", action, "config", before, after)
        except Exception:  # the reload stands (or was refused) either way
            log.exception("could not write the audit event for a config reload")

    async def _retire(
        self, old: Router, providers: list[Provider], cache: RequestCache | None
    ) -> None:
        try:
            await asyncio.wait_for(old.idle(), self._idle_wait_s)
        except TimeoutError:
            log.warning("closing retired providers with calls still running after %gs",
                        self._idle_wait_s)  # fmt: skip
        for provider in providers:
            await provider.aclose()
        if cache is not None:
            await old.flush()  # its pending writes first
            await cache.aclose()


def _fingerprint(path: Path) -> str | None:
    """The content's digest, following symlinks; None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _summary(config: RouterConfig) -> dict[str, Any]:
    """What the audit log keeps of a config: aliases and deployment names only
    (options may hold URLs with credentials)."""
    return {
        "models": {
            alias: [d.name for d in model.deployments] for alias, model in config.models.items()
        }
    }


def _redacted(exc: ConfigError) -> str:
    """The error's first line (a YAML error goes on to quote the file) with
    quoted values masked: a bad option is echoed, and it may be a URL with a
    password in it."""
    return _QUOTED.sub("'***'", str(exc).splitlines()[0])
