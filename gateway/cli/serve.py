"""`infergate serve` (one process, or N sharing a port) and `infergate check-config`."""

from __future__ import annotations

import argparse
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

from gateway.config import GatewayConfig, host_port, load_config
from router.config import ConfigError

log = logging.getLogger("infergate")


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML config (default: the embedded mock setup)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--metrics-port", type=int, help="0 disables /metrics")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    serve.set_defaults(run=run_serve)
    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config")
    check.set_defaults(run=run_check)


def run_serve(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.workers < 1:
        raise ConfigError("--workers must be >= 1")
    path = Path(args.config) if args.config else None  # watched and reloaded
    if args.workers > 1:
        return _serve_many(config, args.workers, path)
    _serve_one(config, reuse_port=False, metrics=True, path=path)
    return 0


def run_check(args: argparse.Namespace) -> int:
    from adapters import build_provider
    from router.router import Router

    Router(load_config(args.config), build_provider)
    print(f"{args.config}: ok")
    return 0


def _config(args: argparse.Namespace) -> GatewayConfig:
    config = load_config(args.config)
    overrides = {
        k: v
        for k, v in (("host", args.host), ("port", args.port), ("metrics_port", args.metrics_port))
        if v is not None
    }
    if overrides:
        server = config.server.model_copy(update=overrides)
        config = config.model_copy(update={"server": server})
    return config


def _serve_one(
    config: GatewayConfig, reuse_port: bool, metrics: bool, path: Path | None = None
) -> None:
    import uvloop

    from gateway.server import serve

    if metrics and config.server.metrics_port:
        from gateway.metrics_server import serve_metrics

        serve_metrics(config.server.metrics_port, config.server.host)
        where = host_port(config.server.host, config.server.metrics_port)
        log.info("serving /metrics on %s", where)
    uvloop.run(serve(config, reuse_port=reuse_port, config_path=path))


def _worker(config: GatewayConfig, parent: int, path: Path | None) -> None:
    setup_logging()
    _die_with_parent(parent)
    _serve_one(config, reuse_port=True, metrics=False, path=path)


def _die_with_parent(parent: int) -> None:
    """Ask Linux for SIGTERM when the supervising process dies, so no orphan
    keeps holding the port."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        log.warning("cannot follow the parent's death on this platform")
    if os.getppid() != parent:  # it died before prctl took effect
        sys.exit(1)


def _serve_many(config: GatewayConfig, workers: int, path: Path | None) -> int:
    """N processes on one port (SO_REUSEPORT). This one forwards signals, serves
    the sum of their metrics, and stops them all if one dies unasked."""
    if config.server.port == 0:
        raise ConfigError("--workers needs a fixed port: with port 0 each process gets its own")
    metrics_dir = tempfile.mkdtemp(prefix="infergate-metrics-")
    # Children must see this before they import prometheus_client.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return _supervise(config, workers, path)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(config: GatewayConfig, workers: int, path: Path | None) -> int:
    from prometheus_client import CollectorRegistry, multiprocess

    from gateway.metrics_server import serve_metrics

    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_worker, args=(config, os.getpid(), path)) for _ in range(workers)
    ]
    stopping = False

    def stop_all(signum: int | None = None, frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.pid is not None and proc.exitcode is None:
                os.kill(proc.pid, signal.SIGTERM)

    def reload_all(signum: int, frame: object) -> None:
        for proc in procs:
            if proc.pid is not None and proc.exitcode is None:
                os.kill(proc.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGHUP, reload_all)  # each worker reloads its config
    for proc in procs:
        proc.start()
    if config.server.metrics_port:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        serve_metrics(config.server.metrics_port, config.server.host, registry)
    failed = False
    alive = {proc.sentinel: proc for proc in procs}
    while alive:
        for sentinel in multiprocessing.connection.wait(list(alive)):
            proc = alive.pop(cast(int, sentinel))  # wait() returns what it was given
            proc.join()
            multiprocess.mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]
            if not stopping:
                log.error(
                    "worker %d exited (code %s): stopping the others", proc.pid, proc.exitcode
                )
                stop_all()
            failed |= proc.exitcode != 0 or not stopping
    return 1 if failed else 0


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("INFERGATE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
        stream=sys.stderr,
    )
