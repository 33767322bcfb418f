"""Hot reload: on a change of the config file (or SIGHUP) validate it, build a
new Router snapshot that inherits the live state, and swap one reference.

Calls already running finish on the snapshot they started with; providers the
new snapshot dropped are closed once the old one is idle. An invalid file is
rejected with a logged reason and a metric, and the old snapshot keeps serving.
Server settings (ports, limits) need a restart: a change there is logged.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import watchfiles

from adapters.redis_cache import build_cache
from gateway import metrics
from gateway.config import load_config
from router.cache import ResponseCache
from router.config import CacheConfig, ConfigError
from router.provider import Provider
from router.router import Router

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger("infergate.reload")


class Reloader:
    def __init__(self, gateway: Gateway, path: Path, *, idle_wait_s: float = 600.0) -> None:
        self._gateway = gateway
        self._path = path.resolve()
        self._idle_wait_s = idle_wait_s
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def reload(self) -> bool:
        """Load, validate and swap; False (old config kept) when the file is bad."""
        async with self._lock:
            gateway = self._gateway
            old, before = gateway.router, gateway.cache
            cache = before  # replaced only when the cache config changed
            try:
                config = await asyncio.to_thread(load_config, self._path)
                if config.cache != old.config.cache:
                    cache = _cache(config.cache)
                new = Router(
                    config, gateway.factory, previous=old, cache=cache, clock=old.clock, rng=old.rng
                )
            except ConfigError as exc:
                metrics.RELOADS.labels("rejected").inc()
                log.error("config reload rejected, still serving the previous config: %s", exc)
                for provider in exc.unused:  # built for the rejected config
                    await provider.aclose()
                if cache is not None and cache is not before:
                    await cache.aclose()
                return False
            if config.server != gateway.config.server:
                log.warning("config reload: server settings change only on restart")
            gateway.swap(new, cache)
            metrics.RELOADS.labels("ok").inc()
            log.info("config reloaded from %s: %d models", self._path, len(config.models))
            stale_cache = None if cache is before else before
            task = asyncio.create_task(self._retire(old, new.retired, stale_cache))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            return True

    async def watch(self) -> None:
        """Reload whenever the file changes (editors that replace it included)."""
        async for changes in watchfiles.awatch(self._path.parent, debounce=200, recursive=False):
            if any(Path(p) == self._path for _, p in changes):
                await self.reload()

    async def _retire(
        self, old: Router, providers: list[Provider], cache: ResponseCache | None
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


def _cache(config: CacheConfig) -> ResponseCache | None:
    return build_cache(config) if config.enabled else None
