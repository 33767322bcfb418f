"""`infergate workflow validate` (offline) and `push` (over gRPC, with a key)
on YAML files."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import grpc
from google.protobuf import json_format

from gateway.pb import app_pb2 as pb
from gateway.pb import app_pb2_grpc
from gateway.server import Gateway
from tests.conftest import StartGateway
from tests.gateway.apps.test_auth import bearer, new_key, secure_top

GOOD = """
inputs: {name: {type: string, required: true}}
nodes:
  - {id: start, type: start}
  - {id: hello, type: answer, config: {text: "Hello, {{ start.name }}!"}}
edges: [{from: start, to: hello}]
"""
BAD = GOOD.replace("start.name", "start.nmae")


async def cli(*args: str, key: str = "") -> tuple[int, str, str]:
    env = {**os.environ, "INFERGATE_API_KEY": key}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "workflow", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_validate_reads_yaml_and_names_each_problem(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(BAD)
    assert await cli("validate", str(tmp_path / "good.yaml")) == (
        0, f"{tmp_path / 'good.yaml'}: valid\n", "",
    )  # fmt: skip
    code, out, _ = await cli("validate", str(tmp_path / "bad.yaml"))
    assert code == 1
    assert "node 'hello', config.text: start (start) has no output 'nmae' (it has: name)" in out


async def test_push_creates_then_saves_versions_and_publishes(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw: Gateway = await start_gateway(top=secure_top(tmp_path))
    async with grpc.aio.insecure_channel(gw.address) as channel:
        key = await new_key(channel, gw, "acme", "developer")
        path = tmp_path / "hello.yaml"
        path.write_text(GOOD)
        first = await cli("push", str(path), "--id", "hello", "--address", gw.address, key=key)
        assert first[0] == 0, first[2]
        assert first[1].splitlines() == [
            f"{path}: valid",
            "workflows/hello version 1 saved (published: none)",
        ]
        second = await cli(
            "push", str(path), "--id", "hello", "--publish", "--address", gw.address, key=key
        )
        assert second[1].splitlines()[-1] == "workflows/hello version 2 saved (published)"
        (tmp_path / "bad.yaml").write_text(BAD)
        refused = await cli("push", str(tmp_path / "bad.yaml"), "--id", "hello",
                            "--address", gw.address, key=key)  # fmt: skip
        assert refused[0] == 1  # checked before it is sent
        stub = app_pb2_grpc.AppStub(channel)
        saved = await stub.GetWorkflow(
            pb.GetWorkflowRequest(name="workflows/hello"), metadata=bearer(key)
        )
        assert (saved.latest_version, saved.published_version) == (2, 2)
        assert json_format.MessageToDict(saved.definition)["nodes"][1]["config"]["text"] == (
            "Hello, {{ start.name }}!"
        )
        no_key = await cli("push", str(path), "--id", "hello", "--address", gw.address)
        assert no_key[0] == 2 and "UNAUTHENTICATED" in no_key[2]
