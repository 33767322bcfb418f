"""The HTTP server, started on the gRPC server's event loop (no thread for
Python code, no second process): uvicorn with httptools by default (measured
faster on a quiet machine in bench/rest.py: less CPU per call, and no hand-off
between granian's Rust threads and the loop), granian's embedded server as the
alternative (`rest.server: granian`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from gateway.rest.config import RestConfig

log = logging.getLogger("infergate.rest")


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The gateway owns SIGTERM/SIGINT; uvicorn must not take them over."""
        yield


class HttpServer:
    """One listening HTTP server for `app`; `port` is the bound one (config 0: ephemeral)."""

    def __init__(
        self, app: ASGIApp, config: RestConfig, grace_period_s: float, reuse_port: bool = False
    ) -> None:
        self._app = app
        self._reuse_port = reuse_port
        self._config = config
        self._grace = grace_period_s
        self._task: asyncio.Task[Any] | None = None
        self._server: Any = None
        self.port = 0

    async def start(self) -> None:
        """Bind and serve; returns once the server accepts connections."""
        cfg = self._config
        sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self._reuse_port:  # --workers: N processes share the port, as for gRPC
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((cfg.host, cfg.port))
        except OSError as exc:
            sock.close()
            where = f"[{cfg.host}]:{cfg.port}" if ":" in cfg.host else f"{cfg.host}:{cfg.port}"
            raise OSError(exc.errno, f"REST port {where}: {exc.strerror}") from exc
        self.port = sock.getsockname()[1]
        if cfg.server == "granian":
            # granian binds its own socket; binding here first resolved port 0 and
            # fails clearly on a taken port.
            sock.close()
            await self._start_granian()
            return
        server = self._server = _Uvicorn(
            uvicorn.Config(
                self._app,
                loop="none",
                http="httptools",
                ws="websockets-sansio",
                lifespan="off",
                access_log=False,
                server_header=False,  # no "server: uvicorn" on every answer
                log_config=None,  # the gateway's logging, not uvicorn's own handlers
                log_level="warning",
                # Above load balancers' idle timeouts (60 s on AWS ALB), so they,
                # not the gateway, close idle connections: no 502 races.
                timeout_keep_alive=max(math.ceil(cfg.idle_timeout_s), 1),
                # Past the grace period the shim ends the calls still running
                # (UNAVAILABLE); the extra second lets them send that and finish.
                timeout_graceful_shutdown=math.ceil(self._grace) + 1,
            )
        )
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if self._task.done():
                await self._task  # raise what stopped it
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.005)

    async def _start_granian(self) -> None:
        from granian.constants import Interfaces
        from granian.http import HTTP1Settings
        from granian.server.embed import Server

        server = self._server = Server(
            self._app,
            address=self._config.host,
            port=self.port,
            interface=Interfaces.ASGINL,
            http1_settings=HTTP1Settings(
                header_read_timeout=int(self._config.idle_timeout_s * 1000)
            ),
            log_enabled=False,
        )
        self._task = asyncio.create_task(server.serve())
        for _ in range(400):  # granian has no "started" flag; wait for the port
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(self._config.host, self.port)
                writer.close()
                return
            await asyncio.sleep(0.005)
        raise RuntimeError(f"granian did not start on port {self.port}")

    async def stop(self) -> None:
        """Stop accepting; requests in flight get the grace period, then are
        cancelled. Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        if self._config.server == "granian":
            self._server.stop()
        else:
            self._server.should_exit = True
        try:
            await asyncio.wait_for(task, self._grace + 2)
        except TimeoutError:
            log.warning("the HTTP server did not stop within its grace period")
