"""The web console end to end in a real browser: tests/console/e2e.mjs drives
Debian's Chromium (playwright-core) against a gateway on the embedded defaults
(auth on; the tiny test embedding model stands in for the fetched one). Needs
`make console` (node_modules) and /usr/bin/chromium; skipped without them
unless CI=true. `make console-screenshots` runs it saving docs/console/*.png.

Also here: the vendored libraries match package.json's (like the generated
protobuf code), and the console is served with its security headers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml

from gateway.apps.workflows import document, validate
from gateway.config import DEFAULTS, parse_config
from gateway.server import Gateway
from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "gateway" / "console"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (CONSOLE / "node_modules" / "playwright-core").is_dir():
        return "gateway/console has no node_modules: run `make console`"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}: apt-get install chromium"
    return None


@pytest.fixture
async def console(tmp_path: Path, tiny_model: Path) -> Any:
    """A gateway on the embedded defaults, its ports ephemeral and its data in tmp."""
    config = yaml.safe_load(DEFAULTS.read_text())
    config["data_dir"] = str(tmp_path / "data")
    config["server"].update(port=0, metrics_port=0, grace_period_s=1)
    config["rest"] = {**config.get("rest", {}), "port": 0}
    config.setdefault("dataset", {})["embedder"] = {"model_dir": str(tiny_model)}
    config.setdefault("apps", {})["usage"] = {"flush_interval_s": 0.2}
    gateway = await Gateway.start(parse_config(config))
    yield gateway
    await gateway.server.stop(None)
    await gateway.close()


async def test_vendored_libraries_are_fresh() -> None:
    if shutil.which("node") is None or not (CONSOLE / "node_modules").is_dir():
        service_missing("gateway/console has no node_modules: run `make console`")
    proc = await asyncio.create_subprocess_exec(
        "node", str(CONSOLE / "vendor.mjs"), "--check", stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def test_served_with_a_strict_content_security_policy(console: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{console.http_port}") as http:
        moved = await http.get("/console")
        page = await http.get("/console/")
        script = await http.get("/console/app.js")
        gz = {"accept-encoding": "gzip"}
        async with http.stream("GET", "/console/vendor/uplot.js", headers=gz) as chart:
            sent = b"".join([chunk async for chunk in chart.aiter_raw()])
    assert (moved.status_code, moved.headers["location"]) == (308, "/console/")
    assert page.status_code == 200 and '<script type="module" src="app.js">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text  # no inline script
    assert chart.headers["content-encoding"] == "gzip"
    assert len(sent) < 50_000  # 145 KB as it is


async def _key(http: httpx.AsyncClient, admin: str, role: str) -> str:
    reply = await http.post(
        "/v1/tenants/default/keys",
        json={"role": role},
        headers={"authorization": f"Bearer {admin}"},
    )
    assert reply.status_code == 200, reply.text
    secret: str = reply.json()["secret"]
    return secret


async def _drive(gateway: Gateway, script: str) -> dict[str, dict[str, Any]]:
    """Runs tests/console/<script> against `gateway`; its steps by name, in order."""
    reason = _missing()
    if reason is not None:
        service_missing(reason)
    admin = gateway.apps.admin_secret
    assert admin is not None
    base = f"http://127.0.0.1:{gateway.http_port}"
    async with httpx.AsyncClient(base_url=base) as http:
        user = await _key(http, admin, "user")
    env = {
        **os.environ, "BASE_URL": base, "ADMIN_KEY": admin, "USER_KEY": user,
        "CHROMIUM": CHROMIUM, "SCREENSHOTS": os.environ.get("CONSOLE_SCREENSHOTS", ""),
    }  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        "node", str(Path(__file__).with_name(script)), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    steps = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert proc.returncode == 0, f"{steps[-1:]} {err.decode()[-2000:]}"
    return {s["step"]: s for s in steps}


async def test_the_console_in_a_real_browser(console: Gateway) -> None:
    by_name = await _drive(console, "e2e.mjs")
    assert list(by_name) == [
        "signed in", "models", "playground", "datasets", "apps", "tasks", "usage",
        "admin pages", "user refused admin pages",
    ]  # fmt: skip
    assert by_name["models"]["healthy"] >= 2
    assert by_name["playground"]["distinctLengths"] >= 3  # tokens arrived one by one
    assert by_name["datasets"]["marks"] >= 1  # the query's words highlighted


async def test_the_workflow_editor_in_a_real_browser(console: Gateway) -> None:
    by_name = await _drive(console, "workflows.mjs")
    assert list(by_name) == [
        "built", "validated", "saved and published", "ran", "past run", "versions",
        "export and import", "branches", "user runs read-only",
    ]  # fmt: skip
    assert by_name["built"]["nodes"] == 3
    assert "no output 'txt'" in by_name["validated"]["problem"]
    assert by_name["ran"]["distinctLengths"] >= 3  # the answer streamed in
    assert by_name["ran"]["sawRunning"]  # a node lit up while it ran
    assert by_name["past run"]["runId"] == by_name["ran"]["runId"]
    # What the browser saw is what the gateway kept.
    auth = {"authorization": f"Bearer {console.apps.admin_secret}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{console.http_port}") as http:
        runs = (await http.get("/v1/workflows/echo-flow/runs", headers=auth)).json()["runs"]
        flow = (await http.get("/v1/workflows/echo-flow", headers=auth)).json()
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]  # the user's, then ours
    assert runs[1]["name"].split("/")[-1] == by_name["ran"]["runId"]
    assert (flow["latestVersion"], flow["publishedVersion"]) == (2, 1)
    by_id = {n["id"]: n for n in flow["definition"]["nodes"]}
    assert by_id["llm"]["config"]["messages"] == [
        {"role": "user", "content": "Repeat after me: {{ start.question }}"}
    ]
    assert by_id["answer"]["config"] == {"text": "Echo: {{ llm.text }}"}
    assert all(set(n["position"]) == {"x", "y"} for n in by_id.values())
    assert flow["definition"]["edges"] == [
        {"from": "start", "to": "llm"},
        {"from": "llm", "to": "answer"},
    ]


async def test_the_editor_templates_are_valid_workflows() -> None:
    """The workflows a developer starts from (workflows/templates.js) pass the
    server's checks as they are."""
    if shutil.which("node") is None:
        service_missing("node is not installed")
    templates = CONSOLE / "static" / "workflows" / "templates.js"
    script = (
        f"import({json.dumps(templates.as_uri())})"
        ".then((m) => console.log(JSON.stringify(m.TEMPLATES)))"
    )
    proc = await asyncio.create_subprocess_exec(
        "node", "--input-type=module", "-e", script, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    found = {t["id"]: t["doc"] for t in json.loads(out)}
    assert set(found) == {"blank", "rag", "compare", "summarise"}
    for name, doc in found.items():
        problems = validate.check(document.parse(doc))
        assert problems == [], (name, problems)


async def test_the_editor_document_functions() -> None:
    """workflows/model.js under `node --test` (tests/console/model.test.mjs)."""
    if shutil.which("node") is None:
        service_missing("node is not installed")
    proc = await asyncio.create_subprocess_exec(
        "node", "--test", str(Path(__file__).with_name("model.test.mjs")),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()[-3000:]
    assert "# pass 12" in out.decode()
