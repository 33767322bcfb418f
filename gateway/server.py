"""The gRPC server: services, health, reflection, interceptors, and a graceful stop.

Shutdown order (SIGTERM): every health status flips to NOT_SERVING, the server
keeps accepting for `drain_delay_s` so load balancers notice, then it refuses
new RPCs and in-flight ones get `grace_period_s` to finish before they are
cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from adapters import build_provider
from gateway import assembly, cache_warm, heap, tracing, wakeup
from gateway.apps.runtime import AppLayer
from gateway.apps.workflows.tasks import QueueTasks
from gateway.config import GatewayConfig, ServerConfig, host_port
from gateway.dataset.disabled import DisabledDatasetService, DisabledRetrieval
from gateway.dataset.retriever import DatasetRetriever
from gateway.dataset.service import DatasetService
from gateway.live import LiveRouter
from gateway.metrics import MetricsInterceptor
from gateway.pb import (
    app_pb2,
    app_pb2_grpc,
    dataset_pb2,
    dataset_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)
from gateway.reload import Reloader
from gateway.rest.service import RestService
from gateway.router.service import RouterService
from gateway.rpc_spans import TracingInterceptor
from gateway.tasks.runtime import TaskRuntime
from gateway.tasks.service import TasksService
from indexer.datasets import Datasets
from router import spans
from router.router import ProviderFactory, Router

log = logging.getLogger("infergate")

SERVICES = {
    name: module.DESCRIPTOR.services_by_name[name]
    for name, module in (
        ("Router", router_pb2),
        ("Dataset", dataset_pb2),
        ("App", app_pb2),
        ("Tasks", tasks_pb2),
    )
}
SERVICE_NAMES = {name: service.full_name for name, service in SERVICES.items()}
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
ADD_TO_SERVER = {
    "Router": router_pb2_grpc.add_RouterServicer_to_server,
    "Dataset": dataset_pb2_grpc.add_DatasetServicer_to_server,
    "App": app_pb2_grpc.add_AppServicer_to_server,
    "Tasks": tasks_pb2_grpc.add_TasksServicer_to_server,
}

_FINAL_STATUSES = (
    health_pb2.HealthCheckResponse.NOT_SERVING,
    health_pb2.HealthCheckResponse.SERVICE_UNKNOWN,
)


class _Watcher:
    """A Watch's context that notes when the watcher was sent a final status."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context
        self.told = asyncio.Event()

    async def write(self, message: health_pb2.HealthCheckResponse) -> None:
        await self._context.write(message)
        if message.status in _FINAL_STATUSES:
            self.told.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class Health(HealthServicer):  # type: ignore[misc]  # grpc_health: untyped
    """grpc.health.v1 whose Watch streams end (status OK) when the server stops,
    so that they do not hold a graceful stop for its whole grace period.
    (Cancelling a handler's task would not do: gRPC leaves such an RPC open.)"""

    def __init__(self) -> None:
        super().__init__()
        self._watchers: set[_Watcher] = set()
        self._closing = asyncio.Event()

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        watcher = _Watcher(context)
        self._watchers.add(watcher)
        inner = asyncio.ensure_future(super().Watch(request, watcher))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({inner, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            inner.cancel()
            closing.cancel()
            self._watchers.discard(watcher)

    async def end_watches(self, patience: float = 1.0) -> None:
        """End the Watch streams once every watcher was sent its final status,
        or after `patience` seconds."""
        told = [w.told.wait() for w in self._watchers]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*told), patience)
        self._closing.set()


def _bind(server: grpc.aio.Server, cfg: ServerConfig) -> int:
    """The bound port; a taken port (or an address not on this machine) is a
    clear error rather than gRPC's "Failed to bind"."""
    address = cfg.address
    try:
        return int(server.add_insecure_port(address))
    except RuntimeError as exc:
        raise OSError(
            f"cannot serve gRPC on {address}: the port is in use, or the address is "
            "not one of this machine's (server.host, server.port)",
        ) from exc


def server_options(cfg: ServerConfig, *, reuse_port: bool) -> list[tuple[str, int]]:
    keepalive = cfg.keepalive
    return [
        ("grpc.max_send_message_length", cfg.max_message_bytes),
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_concurrent_streams", cfg.max_concurrent_streams),
        ("grpc.keepalive_time_ms", int(keepalive.time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive.timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", int(keepalive.permit_without_calls)),
        (
            "grpc.http2.min_recv_ping_interval_without_data_ms",
            int(keepalive.min_client_ping_interval_s * 1000),
        ),
        ("grpc.http2.max_ping_strikes", 2),
        # gRPC turns SO_REUSEPORT on by default, which lets a second gateway
        # silently share a port by mistake; only --workers wants it.
        ("grpc.so_reuseport", int(reuse_port)),
    ]


async def _serve_grpc(
    config: GatewayConfig,
    servicers: dict[str, Any],
    interceptors: list[grpc.aio.ServerInterceptor],
    reuse_port: bool,
    stack: contextlib.AsyncExitStack,
) -> tuple[grpc.aio.Server, Health, int]:
    """The started gRPC server with `servicers`, health and reflection, every
    service SERVING; returns it with its health servicer and bound port."""
    server = grpc.aio.server(
        interceptors=interceptors,
        options=server_options(config.server, reuse_port=reuse_port),
    )
    stack.push_async_callback(server.stop, None)
    for name, servicer in servicers.items():
        ADD_TO_SERVER[name](servicer, server)  # type: ignore[no-untyped-call]
    health = Health()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*SERVICE_NAMES.values(), "grpc.health.v1.Health", reflection.SERVICE_NAME], server
    )
    port = _bind(server, config.server)
    await server.start()
    for full_name in ("", *SERVICE_NAMES.values()):
        await health.set(full_name, health_pb2.HealthCheckResponse.SERVING)
    return server, health, port


def _dataset_service(config: GatewayConfig, datasets: Datasets | None, apps: AppLayer) -> Any:
    """The Dataset servicer; apps' chat retrieves through the same datasets,
    as its caller's tenant (or is told the Dataset layer is off)."""
    if datasets is None:
        apps.chat.retriever = DisabledRetrieval()
        return DisabledDatasetService()
    apps.chat.retriever = DatasetRetriever(datasets)
    return DatasetService(
        datasets, config.data_dir / "uploads", audit=apps.store.audit.append,
        max_upload_bytes=config.dataset.max_upload_bytes,
    )  # fmt: skip


@dataclass
class Gateway:
    """A started server and what it serves. Everything it opened sits on one
    exit stack: a failed start and close() both unwind it, last opened first."""

    config: GatewayConfig
    server: grpc.aio.Server
    health: Health
    live: LiveRouter
    port: int
    apps: AppLayer  # the App layer: its store, limiter and usage writer
    task_runtime: TaskRuntime  # the task queue, and its in-process workers
    # Short service name -> servicer instance (what the REST shim calls in-process).
    servicers: dict[str, Any]
    interceptors: list[grpc.aio.ServerInterceptor]
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    reloader: Reloader | None = None
    rest: RestService | None = None  # the REST shim, on this event loop
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    @property
    def http_port(self) -> int:
        """The REST shim's bound port (0: REST is off)."""
        return self.rest.port if self.rest is not None else 0

    @property
    def address(self) -> str:
        return host_port(self.config.server.host, self.port)

    @property
    def router(self) -> Router:
        """The snapshot new calls get."""
        return self.live.router

    @classmethod
    async def start(
        cls,
        config: GatewayConfig,
        *,
        reuse_port: bool = False,
        factory: ProviderFactory = build_provider,
        config_path: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Gateway:
        """Serve `config`. With `config_path`, the file is watched and SIGHUP
        reloads it (see gateway/reload.py). If any part fails to start (e.g. the
        gRPC port is taken), what had started is closed, in reverse order, before
        the error propagates; the same holds when the start is cancelled."""
        async with contextlib.AsyncExitStack() as stack:
            gateway = await cls._start(config, stack, reuse_port, factory, clock)
            if config_path is not None:
                gateway._watch(config_path, factory, stack)
            gateway._stack = stack.pop_all()  # started: from here on close() owns it all
        return gateway

    @classmethod
    async def _start(
        cls,
        config: GatewayConfig,
        stack: contextlib.AsyncExitStack,
        reuse_port: bool,
        factory: ProviderFactory,
        clock: Callable[[], float],
    ) -> Gateway:
        """Open each part, server last; what uses a part is closed before it."""
        provider = tracing.setup(config.tracing)
        if provider is not None:  # closed last: the other parts' last spans are exported
            stack.callback(tracing.shutdown, provider)
        live = await assembly.open_router(config, stack, factory, clock)
        datasets = await assembly.open_datasets(config, live, stack)
        if datasets is not None:
            live.use_embedder(datasets.embedder, datasets.embedding_model)
        apps = await AppLayer.open(config.apps, config.data_dir, live)  # chat: the datasets
        stack.push_async_callback(apps.aclose)
        servicers: dict[str, Any] = {
            "Router": RouterService(live),
            "App": apps.service,
            "Dataset": _dataset_service(config, datasets, apps),
        }
        task_runtime = TaskRuntime(
            config.tasks, config.data_dir, live,
            types=assembly.task_types(datasets, apps.workflows),
            usage=assembly.usage_sink(apps.recorder, lambda: live().prices, apps.spend),
        )  # fmt: skip
        apps.tasks = QueueTasks(
            task_runtime.queue, task_runtime.types, config.tasks.max_payload_bytes
        )
        apps.service.use_queue(task_runtime.queue)
        # Its workers use the router and the datasets: they stop before either closes.
        stack.push_async_callback(task_runtime.aclose, config.server.grace_period_s)
        servicers["Tasks"] = TasksService(
            task_runtime.queue, task_runtime.types, config.tasks.max_payload_bytes
        )
        # Access (auth -> role -> limits -> usage) inside metrics, so refusals are counted.
        # Tracing outermost: every other interceptor, the access log's too, runs in the span.
        interceptors: list[grpc.aio.ServerInterceptor] = [
            *([TracingInterceptor()] if spans.ON else []),
            MetricsInterceptor(access_log=config.server.access_log),
            *apps.interceptors,
        ]
        server, health, port = await _serve_grpc(config, servicers, interceptors, reuse_port, stack)
        if datasets is None:
            await health.set(SERVICE_NAMES["Dataset"], health_pb2.HealthCheckResponse.NOT_SERVING)
        gateway = cls(
            config, server, health, live, port, apps, task_runtime, servicers, interceptors
        )
        stack.push_async_callback(gateway._stop_tasks)
        if config.rest.enabled:
            served = [(SERVICES[name], s) for name, s in servicers.items()]
            served.append((HEALTH, health))
            gateway.rest = await RestService.start(
                config.rest, served, interceptors, config.server.grace_period_s,
                reuse_port=reuse_port,
            )  # fmt: skip
            stack.push_async_callback(gateway.rest.stop)
        if config.routing.probe_interval_s:
            gateway.spawn(gateway._probe_forever())
        if datasets is not None and config.dataset.snapshot_interval_s:
            gateway.spawn(gateway._snapshot_forever(datasets))
        if config.cache.enabled and config.cache.warm_file is not None:
            gateway.spawn(gateway._warm_cache(config.cache.warm_file))
        return gateway

    def _watch(
        self, path: Path, factory: ProviderFactory, stack: contextlib.AsyncExitStack
    ) -> None:
        """Reload `path` when it changes and on SIGHUP."""
        reloader = self.reloader = Reloader(
            self.live, path, factory, server=self.config.server, audit=self.apps.store.audit.append
        )
        self.spawn(reloader.watch())
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: self.spawn(reloader.reload("sighup")))
        stack.callback(loop.remove_signal_handler, signal.SIGHUP)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run in the background until done or until close()."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _stop_tasks(self) -> None:
        """Cancel the background tasks and wait until they have ended."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _warm_cache(self, path: Path) -> None:
        """cache.warm_file, through this gateway's own gRPC port (the normal path:
        auth with INFERGATE_API_KEY, limits, usage), once it serves."""
        host = self.config.server.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        address = host_port(host, self.port)
        key = os.environ.get("INFERGATE_API_KEY", "")
        log.info("cache warm-up from %s started", path)
        try:
            summary = await cache_warm.warm(address, path, key)
        except Exception:  # a warm-up that cannot run must say so, and not stop the gateway
            log.exception("cache warm-up from %s failed", path)
            return
        log.info("cache warm-up from %s: %s", path, summary.line())
        for number, why in summary.failed[:20]:
            log.warning("cache warm-up: line %d: %s", number, why)

    async def _probe_forever(self) -> None:
        """Active health checks: every deployment's probe(), at the configured interval."""
        while True:
            routing = self.router.config.routing
            await self.router.probe(routing.probe_timeout_s)
            await asyncio.sleep(routing.probe_interval_s)

    async def _snapshot_forever(self, datasets: Datasets) -> None:
        """Save changed dataset indexes now and then, so a restart loads fast
        (the SQLite store is the truth either way)."""
        while True:
            await asyncio.sleep(self.config.dataset.snapshot_interval_s)
            try:
                await datasets.flush()
            except Exception:  # e.g. a full disk: keep serving, try again next time
                log.exception("saving the dataset indexes failed")

    async def shutdown(self) -> None:
        """Drain and stop; returns once in-flight RPCs finished or the grace ran out."""
        cfg = self.config.server
        await self.health.enter_graceful_shutdown()
        if cfg.drain_delay_s:
            await asyncio.sleep(cfg.drain_delay_s)
        await self.health.end_watches()
        # REST calls in flight share the same grace period as gRPC ones.
        rest_stopped = self.rest.stop() if self.rest is not None else asyncio.sleep(0)
        await asyncio.gather(rest_stopped, self.server.stop(cfg.grace_period_s))
        await self.close()

    async def close(self) -> None:
        """Unwind what start() opened, last opened first: the REST shim, the
        background tasks, the gRPC server (no grace: shutdown() gives one), the
        task workers, the App layer, the datasets (saving changed indexes) and
        the data dir's claim, then the providers and the cache. Idempotent."""
        await self._stack.aclose()


async def serve(
    config: GatewayConfig, *, reuse_port: bool = False, config_path: Path | None = None
) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    gateway = await Gateway.start(config, reuse_port=reuse_port, config_path=config_path)
    heap.settle(config.server.gc_thresholds, config.server.gc_freeze)
    with wakeup.bounded(config.server.max_cpu_wakeup_us):
        log.info("serving gRPC on %s", gateway.address)
        if gateway.rest is not None:
            log.info("serving HTTP on %s", host_port(config.rest.host, gateway.http_port))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down: draining for %.1fs", config.server.drain_delay_s)
        await gateway.shutdown()
    log.info("stopped")
