"""The README runs as written: its first lines are the run and test commands,
its config example is valid, and every Python and shell example runs against a
gateway started on the embedded defaults, in order, as a new user would after
`make run` (which fetches the model first). A block is left out only when the
line before it says `<!-- not run by tests/test_readme.py: <reason> -->`; the
test prints how many it ran and left out, and why.

Each shell block runs under `bash -euo pipefail` with `curl` failing on an
HTTP error (so a 4xx example is a failure), in a fresh working directory whose
`data/` is the gateway's data dir, with `INFERGATE_API_KEY` set to the admin
key that the first start printed. Addresses are the only thing rewritten: the
README's 50051 and 8080 become the test gateway's ports.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import DEFAULTS, load_config
from gateway.server import Gateway

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(?:<!-- not run by tests/test_readme\.py: (?P<why>[^>]*?) -->\n)?"
                   r"```(?P<lang>python|sh)\n(?P<code>.*?)```", re.S)  # fmt: skip
BASH_PREAMBLE = 'curl() { command curl --fail-with-body "$@"; }\n'


def test_first_lines_are_the_run_and_test_commands() -> None:
    block = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0].startswith("make run ")
    assert block[1].startswith("make test ")
    assert "make test" in (ROOT / ".ci" / "run").read_text().splitlines()[-1]


def test_the_config_example_is_valid() -> None:
    from adapters import build_provider
    from gateway.config import parse_config
    from router.router import Router

    block = README.split("### Config", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(yaml.safe_load(block), "README.md")
    assert config.models["chat"].routing_strategy.override[0].then.provider == "coder"
    Router(config, build_provider)  # every deployment builds


async def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_every_example_runs_against_the_embedded_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    # `make run`: the model first, then the gateway (its ports free ones here).
    code, _, err = await run([sys.executable, "-m", "gateway.cli", "model", "fetch"], tmp_path, env)
    assert code == 0, err
    config = load_config(DEFAULTS)
    config = config.model_copy(update={
        "server": config.server.model_copy(update={"port": 0, "metrics_port": 0}),
        "rest": config.rest.model_copy(update={"port": 0}),
        "data_dir": tmp_path / "data",
    })  # fmt: skip
    gateway = await Gateway.start(config)
    assert gateway.apps.admin_secret  # a first start: it made the admin key
    env["INFERGATE_API_KEY"] = gateway.apps.admin_secret
    addresses = {
        "127.0.0.1:50051": gateway.address,
        "127.0.0.1:8080": f"127.0.0.1:{gateway.http_port}",
        "localhost:8080": f"127.0.0.1:{gateway.http_port}",
    }
    ran, left_out, outputs = 0, [], []
    try:
        for block in BLOCK.finditer(README):
            if block["why"]:
                left_out.append(block["why"])
                continue
            code_text = block["code"]
            for old, new in addresses.items():
                code_text = code_text.replace(old, new)
            if block["lang"] == "python":
                argv = [sys.executable, "-c", code_text]
            else:
                argv = ["bash", "-euo", "pipefail", "-c", BASH_PREAMBLE + code_text]
            code, out, err = await run(argv, tmp_path, env)
            assert code == 0, f"README block:\n{block['code']}\nstdout:\n{out}\nstderr:\n{err}"
            ran += 1
            outputs.append(out)
    finally:
        await gateway.server.stop(None)
        await gateway.close()
    with capsys.disabled():
        print(f"\nREADME: ran {ran} examples, left out {len(left_out)}: " + "; ".join(left_out))
    fences = [line for line in README.splitlines() if line in ("```python", "```sh")]
    assert ran + len(left_out) == len(fences)  # none missed by the pattern
    # The first client example streams from the mock, and says how it ended.
    first = outputs[0].splitlines()
    assert first[0] == " ".join(["tell me about gateways"] * 4)
    assert first[1] == "[length] 16 tokens"
