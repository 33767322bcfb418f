"""The config watcher: what counts as a change of the config file, and what
does not (other files in its directory, a `touch`), including a Kubernetes
ConfigMap volume's symlink swap."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters import build_provider
from gateway.config import ServerConfig, load_config
from gateway.live import LiveRouter
from gateway.reload import Reloader
from router.router import Router


def config_text(alias: str) -> str:
    deployment = {"name": alias, "provider": "mock", "model": "echo"}
    return yaml.safe_dump(
        {"routing": {"probe_interval_s": 0}, "models": {alias: {"deployments": [deployment]}}}
    )


@dataclass
class Watched:
    live: LiveRouter
    reloader: Reloader
    actions: list[str] = field(default_factory=list)

    def aliases(self) -> set[str]:
        return set(self.live.router.models)

    async def until(self, alias: str, touch: Callable[[], None]) -> None:
        """Until `alias` is served. `touch` makes the change again now and then:
        one made before the watcher started is not seen."""
        for i in range(200):
            if i % 20 == 0:
                touch()
            if alias in self.aliases():
                return
            await asyncio.sleep(0.025)
        raise AssertionError(f"{alias} never served; serving {self.aliases()}")


@contextlib.asynccontextmanager
async def watching(path: Path) -> AsyncIterator[Watched]:
    config = await asyncio.to_thread(load_config, path)
    live = LiveRouter(Router(config, build_provider), None)
    watched = Watched(live, Reloader(live, path, build_provider, server=ServerConfig()))

    async def audit(actor: str, action: str, *rest: Any) -> None:
        watched.actions.append(action)

    watched.reloader._append_audit = audit
    task = asyncio.create_task(watched.reloader.watch())
    try:
        yield watched
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await live.router.aclose()


async def test_a_log_file_beside_the_config_and_a_touch_reload_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, log_file = tmp_path / "gateway.yaml", tmp_path / "gateway.log"
    path.write_text(config_text("a"))
    async with watching(path) as watched:
        await watched.until("b", lambda: path.write_text(config_text("b")))
        with caplog.at_level(logging.INFO):
            for i in range(30):  # the gateway's own output, redirected beside its config
                with log_file.open("a") as f:
                    f.write(f"line {i}\n")
                await asyncio.sleep(0.01)
            path.touch()  # an event, the same content
            await asyncio.sleep(0.5)  # past the watcher's 200 ms debounce
            assert watched.actions == ["ReloadConfig"]  # "b" only
            await watched.until("c", lambda: path.write_text(config_text("c")))
    assert watched.actions == ["ReloadConfig", "ReloadConfig"]
    assert not [r for r in caplog.records if r.name.startswith("watchfiles")]


def _configmap_version(root: Path, name: str, alias: str) -> None:
    """What the kubelet does: a new timestamped directory, then `..data`
    swapped to it atomically (a new symlink renamed over the old one)."""
    (root / name).mkdir()
    (root / name / "gateway.yaml").write_text(config_text(alias))
    os.symlink(name, root / "..data_tmp")
    os.replace(root / "..data_tmp", root / "..data")


async def test_a_configmap_symlink_swap_is_a_change(tmp_path: Path) -> None:
    _configmap_version(tmp_path, "..2026_12_06_01", "a")
    path = tmp_path / "gateway.yaml"
    os.symlink("..data/gateway.yaml", path)
    versions = iter(range(2, 100))
    async with watching(path) as watched:
        await watched.until(
            "b", lambda: _configmap_version(tmp_path, f"..2026_12_06_{next(versions):02}", "b")
        )
    assert watched.actions == ["ReloadConfig"]


async def test_server_settings_change_only_on_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(config_text("a"))
    config = await asyncio.to_thread(load_config, path)
    live = LiveRouter(Router(config, build_provider), None)
    reloader = Reloader(live, path, build_provider, server=config.server)
    try:
        changed = yaml.safe_load(config_text("b"))
        changed["server"] = {"port": 50999, "grace_period_s": 3}
        path.write_text(yaml.safe_dump(changed))
        with caplog.at_level(logging.WARNING, logger="infergate.reload"):
            assert await reloader.reload("sighup")
        assert set(live.router.models) == {"b"}  # the models took effect
        assert [r.getMessage() for r in caplog.records] == [
            "config reload: server settings change only on restart"
        ]
    finally:
        await live.router.aclose()


async def test_a_config_symlinked_from_another_folder_is_watched_where_it_lives(
    tmp_path: Path,
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "run").mkdir()
    real = tmp_path / "etc" / "infergate.yaml"
    real.write_text(config_text("a"))
    path = tmp_path / "run" / "gateway.yaml"
    path.symlink_to(real)
    async with watching(path) as watched:
        await watched.until("b", lambda: real.write_text(config_text("b")))
    assert watched.actions == ["ReloadConfig"]
