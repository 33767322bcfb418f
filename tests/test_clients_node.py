"""A Node.js client (@grpc/grpc-js with the protos, clients/node/) drives the
running gateway: it streams tokens and checks health. Needs `make clients`
(node_modules); skipped without it unless CI=true, where it must run."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from gateway.server import Gateway
from tests.conftest import service_missing

CLIENT = Path(__file__).resolve().parent.parent / "clients" / "node"


def _ready() -> str | None:
    """Why the Node client cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        return "clients/node has no node_modules: run `make clients`"
    if not (CLIENT / "third_party" / "google" / "api" / "http.proto").is_file():
        return "clients/node/third_party is missing: run `make clients`"
    return None


@pytest.fixture
def node() -> str:
    reason = _ready()
    if reason is not None:
        service_missing(reason)
    return shutil.which("node") or "node"


async def _run(node: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        node, str(CLIENT / "stream.js"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_node_client_streams_tokens_and_checks_health(node: str, gateway: Gateway) -> None:
    code, out, err = await _run(
        node, "--address", gateway.address, "--model", "chat", "--text", "red green blue"
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["text"] == "red green blue red green blue red green"
    assert summary["chunks"] >= 8  # token by token, not one message
    assert (summary["finishReason"], summary["outputTokens"]) == ("stop", 8)
    assert (summary["health"], summary["routerHealth"]) == ("SERVING", "SERVING")


async def test_node_client_sees_grpc_errors(node: str, gateway: Gateway) -> None:
    code, _, err = await _run(node, "--address", gateway.address, "--model", "nope")
    assert code == 1
    assert "gRPC 5" in err and "nope" in err  # NOT_FOUND, with the server's message
