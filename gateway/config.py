"""The whole config file: the router's models plus the gRPC server's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, PositiveInt

from gateway.apps.config import AppsConfig
from gateway.dataset.config import DatasetConfig
from gateway.rest.config import RestConfig
from gateway.tasks.config import TasksConfig
from gateway.tracing import TracingConfig
from router import config as router_config
from router.config import Frozen, RouterConfig

# The embedded config: mock models, SQLite store, in-process task queue.
DEFAULTS = Path(__file__).with_name("defaults.yaml")


class KeepaliveConfig(Frozen):
    time_s: float = Field(default=30, gt=0, description="server pings an idle client this often")
    timeout_s: float = Field(default=10, gt=0, description="and drops it if no ack by then")
    min_client_ping_interval_s: float = Field(default=10, gt=0)
    permit_without_calls: bool = True


class ServerConfig(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0 disables /metrics")
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_concurrent_streams: int = Field(default=1024, ge=1)
    keepalive: KeepaliveConfig = KeepaliveConfig()
    drain_delay_s: float = Field(
        default=0, ge=0, description="after SIGTERM: NOT_SERVING this long before refusing RPCs"
    )
    grace_period_s: float = Field(
        default=15, ge=0, description="then in-flight RPCs get this long to finish"
    )
    access_log: bool = Field(
        default=False, description="one INFO line per RPC on the infergate.access logger"
    )
    gc_freeze: bool = Field(
        default=True, description="freeze what start-up made out of the collector's reach (heap.py)"
    )
    gc_thresholds: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        default=(700, 10, 10), description="gc.set_threshold once serving (heap.py)"
    )
    max_cpu_wakeup_us: int | None = Field(
        default=None, ge=0, le=2**31 - 1,
        description="while serving, ask the kernel to keep idle CPUs waking within this many "
        "µs (PM QoS; 0: they poll; needs root; wakeup.py)",
    )  # fmt: skip

    @property
    def address(self) -> str:
        """host:port as a gRPC target (an IPv6 host in brackets)."""
        return host_port(self.host, self.port)


def host_port(host: str, port: int) -> str:
    """`host:port`, an IPv6 host in brackets (`[::1]:50051`), as gRPC targets
    and URLs write it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GatewayConfig(RouterConfig):
    server: ServerConfig = ServerConfig()
    rest: RestConfig = RestConfig()
    tasks: TasksConfig = TasksConfig()
    apps: AppsConfig = AppsConfig()  # auth, store, limits, usage (gateway/apps/)
    dataset: DatasetConfig = DatasetConfig()  # embedder, index and chunk settings (indexer/)
    tracing: TracingConfig = TracingConfig()  # OpenTelemetry, off by default (gateway/tracing.py)
    data_dir: Path = Field(
        default=Path("data"),
        description="models, indexes, results and the embedded store (relative: to the cwd)",
    )


def parse_config(data: Any, source: str = "<config>") -> GatewayConfig:
    return router_config.parse_config(data, source, GatewayConfig)


def load_config(path: str | Path | None) -> GatewayConfig:
    """The config at `path`; None: the embedded defaults."""
    return router_config.load_config(DEFAULTS if path is None else path, GatewayConfig)
