"""The README's first lines and its example client stay true."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import yaml

from gateway.config import DEFAULTS, load_config
from gateway.server import Gateway

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_first_lines_are_the_run_and_test_commands() -> None:
    block = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0].startswith("make run ")
    assert block[1].startswith("make test ")
    assert "make test" in (ROOT / ".ci" / "run").read_text().splitlines()[-1]


async def test_example_client_streams_from_the_embedded_defaults(tmp_path: Path) -> None:
    config = load_config(DEFAULTS)
    server = config.server.model_copy(update={"port": 0, "metrics_port": 0})
    # A fresh data dir: its first start creates the admin key the example reads from the env.
    rest = config.rest.model_copy(update={"port": 0})
    config = config.model_copy(update={"server": server, "rest": rest, "data_dir": tmp_path})
    gateway = await Gateway.start(config)
    assert gateway.apps is not None and gateway.apps.admin_secret
    env = {**os.environ, "INFERGATE_API_KEY": gateway.apps.admin_secret}
    try:
        code = re.search(r"```python\n(.*?)```", README, re.S)
        assert code is not None
        script = code.group(1).replace("127.0.0.1:50051", gateway.address)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await gateway.server.stop(None)
        await gateway.close()
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == " ".join(["tell me about gateways"] * 4)
    assert lines[1] == "[length] 16 tokens"


def test_the_config_example_is_valid() -> None:
    from adapters import build_provider
    from gateway.config import parse_config
    from router.router import Router

    block = README.split("### Config", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(yaml.safe_load(block), "README.md")
    assert config.models["chat"].routing_strategy.override[0].then.provider == "coder"
    Router(config, build_provider)  # every deployment builds
