"""Load test any infergate gateway over gRPC with locust.

    locust -f bench/locustfile.py --headless -u 32 -r 8 -t 60s --host 127.0.0.1:50051 \
        --model mock-instant --hdr-dir bench/out --check-fail-ratio 0.01
    python -m bench.report bench/out      # histogram PNG + percentile table

Each user calls Generate and GenerateStream in turn. Locust's own stats get
every call; HDR histograms (microsecond resolution) of each call's total time,
and of the time to first token of every successful stream, are written to
--hdr-dir when the run stops. locust-plugins adds --check-fail-ratio / --check-rps (exit code 3
when missed) and --iterations.
"""

from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any channel: makes blocking gRPC calls cooperative

import os  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402
import locust_plugins  # noqa: E402, F401  (registers the --check-* and --iterations options)
from hdrh.histogram import HdrHistogram  # noqa: E402
from locust import User, constant, events, task  # noqa: E402

from gateway.pb import router_pb2 as pb  # noqa: E402
from gateway.pb import router_pb2_grpc  # noqa: E402

NAMES = ("Generate", "GenerateStream", "GenerateStream TTFT")
HISTOGRAMS = {name: HdrHistogram(1, 60_000_000, 3) for name in NAMES}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--model", default="mock-instant", help="model alias to call")
    parser.add_argument("--prompt", default="tell me about inference gateways")
    parser.add_argument("--hdr-dir", default="bench/out", help="where HDR histograms go")


@events.test_stop.add_listener
def _write_histograms(environment: Any, **_: Any) -> None:
    out = Path(environment.parsed_options.hdr_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, histogram in HISTOGRAMS.items():
        (out / f"{name.replace(' ', '_')}.hdr").write_bytes(histogram.encode())


class GatewayUser(User):
    """One client connection; `--host` is the gateway's host:port."""

    wait_time = constant(0)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.channel = grpc.insecure_channel(self.host)
        self.stub = router_pb2_grpc.RouterStub(self.channel)
        self.request = pb.GenerateRequest(
            model=options.model, messages=[pb.Message(role="user", content=options.prompt)]
        )
        # The gateway's API key (auth is on in the embedded defaults).
        key = os.environ.get("INFERGATE_API_KEY")
        self.metadata = (("authorization", f"Bearer {key}"),) if key else None

    def on_stop(self) -> None:
        self.channel.close()

    def _record(self, name: str, started_ns: int, length: int, error: Exception | None) -> None:
        elapsed_us = (time.perf_counter_ns() - started_ns) // 1000
        if error is None:
            HISTOGRAMS[name].record_value(max(elapsed_us, 1))
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=elapsed_us / 1000.0,
            response_length=length,
            exception=error,
            context={},
        )

    @task
    def generate(self) -> None:
        started = time.perf_counter_ns()
        try:
            reply = self.stub.Generate(self.request, timeout=60, metadata=self.metadata)
        except grpc.RpcError as exc:
            self._record("Generate", started, 0, exc)
            return
        self._record("Generate", started, reply.usage.output_tokens, None)

    @task
    def generate_stream(self) -> None:
        started = time.perf_counter_ns()
        first_token_us = 0
        tokens = 0
        try:
            for chunk in self.stub.GenerateStream(self.request, timeout=60, metadata=self.metadata):
                if not first_token_us and chunk.delta:
                    first_token_us = max((time.perf_counter_ns() - started) // 1000, 1)
                tokens += bool(chunk.delta)
        except grpc.RpcError as exc:
            self._record("GenerateStream", started, tokens, exc)
            return
        self._record("GenerateStream", started, tokens, None)
        if first_token_us:  # into the HDR histogram only: not a request of its own
            HISTOGRAMS["GenerateStream TTFT"].record_value(first_token_us)
