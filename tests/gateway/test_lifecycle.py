"""The real CLI in a subprocess: graceful shutdown, --workers, port conflicts."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.config import host_port, load_config
from gateway.metrics_server import serve_metrics
from gateway.pb import router_pb2_grpc
from tests.conftest import StartGateway, chat

CONFIG = """
server: {{drain_delay_s: {drain}, grace_period_s: {grace}}}
rest: {{port: 0}}
data_dir: {data_dir}
apps: {{auth: {{enabled: false}}, usage: {{enabled: false}}, store: {{url: "sqlite+aiosqlite://"}}}}
models:
  paced:
    deployments:
      - {{name: p, provider: mock, model: echo, options: {{tokens: 20, tokens_per_second: 20}}}}
  chat:
    deployments:
      - {{name: c, provider: mock, model: echo}}
"""
SERVING = re.compile(r"serving gRPC on (\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, tmp: Path, *args: str, drain: float = 0.5, grace: float = 5) -> None:
        config = tmp / "config.yaml"
        config.write_text(CONFIG.format(drain=drain, grace=grace, data_dir=tmp / "data"))
        self.tmp = tmp
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), *args],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp)},
        )  # fmt: skip
        self.log: list[str] = []

    def wait_serving(self, count: int = 1) -> str:
        address = ""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 20
        while count and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            assert line, f"gateway exited early: {''.join(self.log)}"
            self.log.append(line)
            if match := SERVING.search(line):
                address, count = match.group(1), count - 1
        assert not count, "gateway did not start in time"
        return address

    def wait_line(self, text: str, count: int = 1) -> bool:
        """Read the log until `text` appeared on `count` lines (False: it ended first)."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 20
        while count and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                return False
            self.log.append(line)
            count -= text in line
        return not count

    def wait_exit(self, timeout: float = 20) -> int:
        code = self.proc.wait(timeout)
        assert self.proc.stderr is not None
        self.log.append(self.proc.stderr.read())
        return code


def leftovers(tmp: Path) -> list[Path]:
    return list(tmp.glob("infergate-metrics-*"))


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def read_rest(call: grpc.aio.UnaryStreamCall) -> list[Any]:
    messages = []
    while (message := await call.read()) is not grpc.aio.EOF:
        messages.append(message)
    return messages


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[Served]]:
    procs: list[Served] = []
    yield procs
    for s in procs:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        assert s.proc.stderr is not None
        s.proc.stderr.close()


async def test_sigterm_flips_health_then_finishes_the_in_flight_stream(
    tmp_path: Path, served: list[Served]
) -> None:
    server = Served(tmp_path, "--port", "0", "--metrics-port", "0")
    served.append(server)
    address = server.wait_serving()
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service="infergate.v1.Router")
        assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.SERVING
        call = router_pb2_grpc.RouterStub(channel).GenerateStream(chat("paced", "x"))
        first = await call.read()
        assert first.delta == "x"
        server.proc.send_signal(signal.SIGTERM)
        status = None
        for _ in range(40):  # the drain delay is 0.5 s: health flips well inside it
            status = (await health.Check(check)).status
            if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.01)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        rest = await read_rest(call)
        assert await call.code() is grpc.StatusCode.OK
        assert "".join(c.delta for c in rest).split() == ["x"] * 19
        assert rest[-1].usage.output_tokens == 20
    assert server.wait_exit() == 0
    assert "stopped" in "".join(server.log)


async def test_streams_past_the_grace_period_are_cut_and_the_exit_is_clean(
    tmp_path: Path, served: list[Served]
) -> None:
    server = Served(tmp_path, "--port", "0", "--metrics-port", "0", drain=0, grace=0.2)
    served.append(server)
    address = server.wait_serving()
    async with grpc.aio.insecure_channel(address) as channel:
        call = router_pb2_grpc.RouterStub(channel).GenerateStream(chat("paced"))
        await call.read()
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await read_rest(call)
        assert exc.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    assert server.wait_exit() == 0


async def test_workers_share_the_port_and_sum_their_metrics(
    tmp_path: Path, served: list[Served]
) -> None:
    port, metrics_port = free_port(), free_port()
    server = Served(
        tmp_path, "--port", str(port), "--metrics-port", str(metrics_port), "--workers", "2"
    )
    served.append(server)
    server.wait_serving(count=2)
    children = (await asyncio.to_thread(
        subprocess.run,
        ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True, check=False,
    )).stdout.split()  # fmt: skip
    assert len(children) >= 2  # the two workers (spawn may add a resource tracker)
    for _ in range(20):  # new connections: the kernel spreads them over the workers
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await router_pb2_grpc.RouterStub(channel).Generate(chat("chat"))
            assert reply.deployment == "c"
    text = await asyncio.to_thread(scrape, f"http://127.0.0.1:{metrics_port}/metrics")
    line = 'infergate_grpc_requests_total{code="OK",method="/infergate.v1.Router/Generate"}'
    assert f"{line} 20.0" in text
    server.proc.send_signal(signal.SIGHUP)  # passed on: every worker reloads, none dies
    assert server.wait_line("config reloaded", count=2)
    assert server.proc.poll() is None
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert not leftovers(tmp_path), "metrics directory left behind"


async def test_a_worker_dying_unasked_stops_the_rest_and_fails(
    tmp_path: Path, served: list[Served]
) -> None:
    server = Served(tmp_path, "--port", str(free_port()), "--metrics-port", "0", "--workers", "2")
    served.append(server)
    server.wait_serving(count=2)
    pids = [int(line.split()[3]) for line in server.log if SERVING.search(line)]
    os.kill(pids[0], signal.SIGKILL)
    assert await asyncio.to_thread(server.wait_exit) == 1
    assert "stopping the others" in "".join(server.log)
    with pytest.raises(ProcessLookupError):
        os.kill(pids[1], 0)
    assert not leftovers(tmp_path)


async def test_open_health_watches_do_not_hold_the_stop_for_the_grace_period(
    tmp_path: Path, served: list[Served]
) -> None:
    server = Served(tmp_path, "--port", "0", "--metrics-port", "0", drain=0, grace=10)
    served.append(server)
    address = server.wait_serving()
    async with grpc.aio.insecure_channel(address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await asyncio.to_thread(server.wait_exit) == 0
    assert time.monotonic() - started < 5


def test_a_taken_port_fails_clearly(tmp_path: Path, served: list[Served]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Served(tmp_path, "--port", str(port), "--metrics-port", "0")
        served.append(server)
        code = server.wait_exit()
    assert code != 0
    assert str(port) in "".join(server.log)


def test_workers_need_a_fixed_port(tmp_path: Path, served: list[Served]) -> None:
    server = Served(tmp_path, "--port", "0", "--workers", "2")
    served.append(server)
    assert server.wait_exit() == 2
    assert "--workers needs a fixed port" in "".join(server.log)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_metrics_port_answers_on_metrics_only(host: str) -> None:
    if ":" in host and not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback on this host")
    server = serve_metrics(0, host)
    base = f"http://{'[::1]' if ':' in host else host}:{server.server_port}"
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as reply:
            assert reply.status == 200
            assert b"python_info" in reply.read()
        for path in ("/", "/metricsx", "/metrics/", "/anything"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{base}{path}", timeout=5)
            refused.value.close()
            assert refused.value.code == 404, path
    finally:
        server.shutdown()
        server.server_close()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_a_gateway_on_an_ipv6_host_names_and_serves_its_addresses(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    if not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback on this host")
    gateway = await start_gateway(top={"rest": {"host": "::1", "port": 0}}, host="::1")
    assert gateway.address == f"[::1]:{gateway.port}"  # a gRPC target, as clients dial it
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        reply = await router_pb2_grpc.RouterStub(channel).Generate(chat("chat"), timeout=10)
        assert reply.text
    url = f"http://[::1]:{gateway.http_port}/v1/generate"
    request = urllib.request.Request(
        url, data=b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}',
        headers={"content-type": "application/json"},
    )  # fmt: skip
    with await asyncio.to_thread(urllib.request.urlopen, request, timeout=10) as answer:
        assert answer.status == 200


def test_the_configured_address_brackets_an_ipv6_host(tmp_path: Path) -> None:
    """What the CLI commands (workflow push, ingest, cache warm) dial."""
    config = tmp_path / "gateway.yaml"
    models = "models: {m: {deployments: [{name: m, provider: mock, model: echo}]}}"
    config.write_text(f"server: {{host: '::1', port: 50999}}\n{models}\n")
    assert load_config(str(config)).server.address == "[::1]:50999"
    assert host_port("127.0.0.1", 80) == "127.0.0.1:80"
