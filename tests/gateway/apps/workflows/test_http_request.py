"""The `http_request` node and its SSRF-guarded client, against a local server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.apps.workflows.document import DefinitionError
from gateway.apps.workflows.engine import MAX_VALUE_CHARS
from gateway.apps.workflows.events import FAILED, SUCCEEDED, NodeFinished, RunFinished
from gateway.apps.workflows.http import GuardedHttp
from gateway.apps.workflows.nodes.base import NodeFailed, Services
from gateway.apps.workflows.validate import load
from tests.gateway.apps.workflows.helpers import run, services

SECRET = "s3cr3t-value-42"


class Server:
    """A local HTTP server that records what it is sent."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[dict[str, Any]] = []
        self.done = asyncio.Event()  # set at teardown: slow handlers return

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server(0)

    async def record(request: web.Request) -> dict[str, Any]:
        seen = {
            "method": request.method, "path": request.path, "query": dict(request.query),
            "headers": dict(request.headers), "body": (await request.read()).decode(),
        }  # fmt: skip
        srv.seen.append(seen)
        return seen

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(await record(request), headers={"X-Echo": "yes"})

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        raise web.HTTPFound(request.query["to"])

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nope, not here")

    async def big(request: web.Request) -> web.StreamResponse:
        if "chunked" not in request.query:
            return web.Response(body=b"x" * 5000)
        resp = web.StreamResponse()  # no content-length: refused while reading
        await resp.prepare(request)
        for _ in range(10):
            await resp.write(b"y" * 500)
        await resp.write_eof()
        return resp

    async def slow(request: web.Request) -> web.Response:
        await srv.done.wait()
        return web.Response(text="late")

    async def latin1(request: web.Request) -> web.Response:
        body = "Le café crème coûte deux euros à la terrasse.".encode("latin-1")
        declared = "charset" in request.query
        ctype = "text/plain; charset=iso-8859-1" if declared else "application/octet-stream"
        return web.Response(body=body, headers={"Content-Type": ctype})

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/big", big)
    app.router.add_get("/slow", slow)
    app.router.add_get("/latin1", latin1)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv.port = runner.addresses[0][1]
    yield srv
    srv.done.set()
    await runner.cleanup()


class NameResolver(AbstractResolver):
    """Resolves made-up names to fixed addresses."""

    def __init__(self, names: Mapping[str, Sequence[str]]) -> None:
        self.names = names

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {"hostname": host, "host": a, "port": port, "family": socket.AF_INET, "proto": 0,
             "flags": 0}
            for a in self.names[host]
        ]  # fmt: skip

    async def close(self) -> None:
        pass


@pytest.fixture
async def client() -> AsyncIterator[Callable[..., GuardedHttp]]:
    made: list[GuardedHttp] = []

    def make(*args: Any, **kw: Any) -> GuardedHttp:
        made.append(GuardedHttp(*args, **kw))
        return made[-1]

    yield make
    for c in made:
        await c.aclose()


class FakeSecrets:
    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.calls: list[tuple[str, list[str]]] = []

    async def reveal(self, tenant: str, names: Sequence[str]) -> dict[str, str]:
        self.calls.append((tenant, list(names)))
        return {n: self.values[n] for n in names}


def workflow(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "inputs": {"question": "string", "tags": "array"},
        "nodes": [{"id": "start", "type": "start"},
                  {"id": "call", "type": "http_request", "config": dict(config)}],
        "edges": [{"from": "start", "to": "call"}],
        "outputs": {"status": "{{ call.status }}", "json": "{{ call.json }}",
                    "body": "{{ call.body }}", "headers": "{{ call.headers }}"},
    }  # fmt: skip


async def call(
    config: Mapping[str, Any], svc: Services, **inputs: Any
) -> tuple[NodeFinished, RunFinished]:
    events = await run(workflow(config), {"question": "what is leave?", **inputs}, svc)
    [node] = [e for e in events if isinstance(e, NodeFinished) and e.node == "call"]
    done = events[-1]
    assert isinstance(done, RunFinished)
    return node, done


# --- the node ---------------------------------------------------------------------------


async def test_get_with_query_returns_status_headers_and_json(
    server: Server, client: Callable[..., GuardedHttp]
) -> None:
    svc = services(http=client(allow_private=True))
    config = {"url": server.url("/echo?x=1"), "query": {"q": "{{ start.question }}", "n": "a&b"}}
    node, done = await call(config, svc)
    assert done.status == SUCCEEDED, done.error
    assert node.outputs["status"] == 200
    assert node.outputs["headers"]["x-echo"] == "yes"
    assert node.outputs["json"]["query"] == {"x": "1", "q": "what is leave?", "n": "a&b"}
    assert json.loads(node.outputs["body"]) == node.outputs["json"]
    assert server.seen[0]["method"] == "GET"


async def test_an_object_body_is_sent_as_json(
    server: Server, client: Callable[..., GuardedHttp]
) -> None:
    svc = services(http=client(allow_private=True))
    config = {
        "method": "POST", "url": server.url("/echo"),
        "body": {"q": "{{ start.question }}", "k": 3, "tags": "{{ start.tags }}"},
    }  # fmt: skip
    _, done = await call(config, svc, tags=["a", "b"])
    assert done.status == SUCCEEDED, done.error
    seen = server.seen[0]
    assert seen["method"] == "POST"
    assert seen["headers"]["Content-Type"] == "application/json"
    assert json.loads(seen["body"]) == {"q": "what is leave?", "k": 3, "tags": ["a", "b"]}


async def test_a_string_body_is_sent_as_text(
    server: Server, client: Callable[..., GuardedHttp]
) -> None:
    svc = services(http=client(allow_private=True))
    config = {"method": "PUT", "url": server.url("/echo"), "body": "Q: {{ start.question }}",
              "headers": {"content-type": "text/markdown"}}  # fmt: skip
    _, done = await call(config, svc)
    assert done.status == SUCCEEDED, done.error
    assert server.seen[0]["body"] == "Q: what is leave?"
    assert server.seen[0]["headers"]["Content-Type"] == "text/markdown"


async def test_secret_headers_reach_the_server_but_not_the_record(
    server: Server, client: Callable[..., GuardedHttp]
) -> None:
    secrets = FakeSecrets({"API_KEY": SECRET, "OTHER": "unused"})
    svc = services(http=client(allow_private=True), secrets=secrets)
    config = {
        "url": server.url("/echo"),
        "headers": {"X-Api-Key": "{{ secrets.API_KEY }}", "X-Question": "{{ start.question }}"},
    }
    node, done = await call(config, svc)
    assert done.status == SUCCEEDED, done.error
    assert secrets.calls == [("acme", ["API_KEY"])]
    assert server.seen[0]["headers"]["X-Api-Key"] == SECRET  # sent
    assert node.inputs == {"start.question": "what is leave?"}
    # the server echoed the headers back: the secret is masked in every output
    assert node.outputs["json"]["headers"]["X-Api-Key"] == "***"
    assert SECRET not in repr(node) and SECRET not in repr(done)


class LeakyHttp:
    """A client whose errors quote the headers it was given."""

    async def request(self, method: str, url: str, headers: Mapping[str, str], *_: Any) -> Any:
        raise ValueError(f"bad headers: {dict(headers)}")


async def test_a_secret_in_an_error_is_masked(
    server: Server, client: Callable[..., GuardedHttp]
) -> None:
    secrets = FakeSecrets({"K": SECRET})
    node, done = await call(
        {"url": "https://api.example/", "headers": {"X": "{{ secrets.K }}"}},
        services(http=LeakyHttp(), secrets=secrets),
    )
    assert node.status == FAILED
    assert node.error == "bad headers: {'X': '***'}"
    assert SECRET not in done.error
    svc = services(http=client(allow_private=True), secrets=secrets)
    node, _ = await call(
        {"url": server.url("/echo"), "headers": {"X": "{{ secrets.K }}\r\nA: 1"}}, svc
    )
    assert node.status == FAILED and "http_request: GET 127.0.0.1: " in node.error
    assert SECRET not in node.error and server.seen == []


async def test_secrets_need_a_store(server: Server, client: Callable[..., GuardedHttp]) -> None:
    svc = services(http=client(allow_private=True))
    node, _ = await call({"url": server.url("/echo"), "headers": {"K": "{{ secrets.K }}"}}, svc)
    assert node.status == FAILED and "no secrets store" in node.error
    assert server.seen == []


async def test_without_a_client_the_node_fails() -> None:
    node, _ = await call({"url": "https://example.com/"}, services())
    assert node.status == FAILED and "no HTTP client" in node.error


async def test_fail_on_status(server: Server, client: Callable[..., GuardedHttp]) -> None:
    svc = services(http=client(allow_private=True))
    node, done = await call({"url": server.url("/status/404")}, svc)
    assert node.status == FAILED and done.status == FAILED
    assert node.error == "http_request: GET 127.0.0.1 answered 404: nope, not here"
    node, done = await call({"url": server.url("/status/503"), "fail_on_status": False}, svc)
    assert done.status == SUCCEEDED, done.error
    assert node.outputs["status"] == 503 and node.outputs["body"] == "nope, not here"
    assert node.outputs["json"] is None


async def test_charset_is_decoded(server: Server, client: Callable[..., GuardedHttp]) -> None:
    svc = services(http=client(allow_private=True))
    node, _ = await call({"url": server.url("/latin1?charset=1")}, svc)
    assert node.outputs["body"] == "Le café crème coûte deux euros à la terrasse."
    node, _ = await call({"url": server.url("/latin1")}, svc)  # undeclared, not UTF-8: detected
    assert node.outputs["body"] == "Le café crème coûte deux euros à la terrasse."


async def test_the_response_size_is_capped(
    server: Server, client: Callable[..., GuardedHttp]
) -> None:
    svc = services(http=client(allow_private=True))
    for path in ("/big", "/big?chunked=1"):
        node, _ = await call({"url": server.url(path), "max_response_bytes": 1000}, svc)
        assert node.status == FAILED
        assert node.error == "http_request: the response is larger than 1000 bytes"
    node, _ = await call({"url": server.url("/big"), "max_response_bytes": 5000}, svc)
    # the node got all 5000 bytes; its event carries the first MAX_VALUE_CHARS of them
    assert node.status == SUCCEEDED and len(node.outputs["body"]) == MAX_VALUE_CHARS + 1
    capped = services(http=client(allow_private=True, max_response_bytes=100))
    node, _ = await call({"url": server.url("/big")}, capped)  # the gateway's cap
    assert node.error == "http_request: the response is larger than 100 bytes"


async def test_a_slow_server_times_out(server: Server, client: Callable[..., GuardedHttp]) -> None:
    svc = services(http=client(allow_private=True))
    node, _ = await call({"url": server.url("/slow"), "timeout_s": 0.2}, svc)
    assert node.status == FAILED
    assert node.error == "http_request: GET 127.0.0.1 timed out after 0.2 s"
    capped = services(http=client(allow_private=True, max_timeout_s=0.1))
    node, _ = await call({"url": server.url("/slow"), "timeout_s": 30}, capped)
    assert node.error == "http_request: GET 127.0.0.1 timed out after 0.1 s"


def test_checked_when_saved() -> None:
    with pytest.raises(DefinitionError) as caught:
        load(workflow({"url": "https://x.example/", "method": "TRACE"}))
    assert [p.field for p in caught.value.problems] == ["config.method"]
    with pytest.raises(DefinitionError) as caught:
        load(workflow({"url": "file:///etc/passwd"}))
    assert [(p.node, p.field) for p in caught.value.problems] == [("call", "config.url")]
    with pytest.raises(DefinitionError) as caught:
        load(workflow({"url": "https://x.example/{{ secrets.K }}"}))
    [problem] = caught.value.problems
    assert problem.field == "config.url" and "headers only" in problem.message
    load(
        workflow(
            {"url": "https://x.example/{{ start.question }}", "headers": {"A": "{{ secrets.K }}"}}
        )
    )
    load(workflow({"url": "{{ start.question }}", "headers": {"A": "{{ start.question }}"}}))


# --- the guard --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:{port}/echo", "127.0.0.1 is a loopback address"),
        ("http://[::1]:{port}/echo", "::1 is a loopback address"),
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[::ffff:127.0.0.1]:{port}/", "is a loopback address"),
        ("http://localhost:{port}/echo", "localhost resolves to "),
        ("http://0.0.0.0:{port}/", "0.0.0.0 is an unspecified address"),
    ],
)
async def test_private_addresses_are_refused(
    server: Server, client: Callable[..., GuardedHttp], url: str, why: str
) -> None:
    http = client()
    with pytest.raises(NodeFailed) as caught:
        await http.request("GET", url.format(port=server.port), {}, None, 2, 1000)
    assert why in str(caught.value)
    assert "apps.workflows.http_allow_private" in str(caught.value)
    assert server.seen == []


async def test_the_node_reports_the_refusal(
    server: Server, client: Callable[..., GuardedHttp]
) -> None:
    node, done = await call({"url": server.url("/echo")}, services(http=client()))
    assert node.status == FAILED and done.error_node == "call"
    assert node.error.startswith("http_request: 127.0.0.1 is a loopback address; set ")
    assert server.seen == []


async def test_only_http_and_https(client: Callable[..., GuardedHttp]) -> None:
    with pytest.raises(NodeFailed, match="only http and https"):
        await client(allow_private=True).request("GET", "file:///etc/passwd", {}, None, 1, 10)


async def test_an_allowed_network_is_reachable(
    server: Server, client: Callable[..., GuardedHttp]
) -> None:
    http = client(allowed_networks=["127.0.0.0/30"])
    status, headers, body = await http.request("GET", server.url("/echo"), {}, None, 2, 10_000)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["path"] == "/echo"
    with pytest.raises(NodeFailed, match=r"10\.0\.0\.1 is a private address"):
        await http.request("GET", "http://10.0.0.1/", {}, None, 2, 10_000)


async def test_a_redirect_to_a_refused_address_is_refused(
    server: Server, client: Callable[..., GuardedHttp]
) -> None:
    http = client(allowed_networks=["127.0.0.1/32"])
    elsewhere = f"http://127.0.0.2:{server.port}/echo"
    with pytest.raises(NodeFailed, match=r"127\.0\.0\.2 is a loopback address"):
        await http.request("GET", server.url(f"/redirect?to={elsewhere}"), {}, None, 2, 10_000)
    assert [s["path"] for s in server.seen] == ["/redirect"]  # the first hop only


async def test_a_redirect_to_a_name_resolving_privately_is_refused(
    server: Server, client: Callable[..., GuardedHttp]
) -> None:
    names = {"api.example": ["127.0.0.1"], "internal.example": ["10.0.0.7"]}
    http = client(allowed_networks=["127.0.0.1/32"], resolver=NameResolver(names))
    to = f"http://internal.example:{server.port}/echo"
    url = server.url(f"/redirect?to={to}", host="api.example")
    with pytest.raises(NodeFailed, match=r"internal\.example resolves to 10\.0\.0\.7, a private"):
        await http.request("GET", url, {}, None, 2, 10_000)
    assert [s["path"] for s in server.seen] == ["/redirect"]


async def test_every_resolved_address_is_checked(
    server: Server, client: Callable[..., GuardedHttp]
) -> None:
    names = {"mixed.example": ["127.0.0.1", "169.254.169.254"]}
    http = client(allowed_networks=["127.0.0.1/32"], resolver=NameResolver(names))
    with pytest.raises(NodeFailed, match=r"169\.254\.169\.254, a link-local address"):
        await http.request("GET", server.url("/echo", "mixed.example"), {}, None, 2, 10_000)
    assert server.seen == []


async def test_redirects_are_followed_and_other_origins_lose_the_headers(
    server: Server, client: Callable[..., GuardedHttp]
) -> None:
    names = {"other.example": ["127.0.0.1"]}
    http = client(allow_private=True, resolver=NameResolver(names))
    same = server.url("/redirect?to=/echo")
    status, _, _ = await http.request("GET", same, {"X-Key": "k"}, None, 2, 10_000)
    assert status == 200 and server.seen[-1]["headers"]["X-Key"] == "k"
    other = server.url(f"/redirect?to={server.url('/echo', 'other.example')}")
    status, _, _ = await http.request("GET", other, {"X-Key": "k"}, None, 2, 10_000)
    assert status == 200 and "X-Key" not in server.seen[-1]["headers"]


async def test_redirects_are_bounded(server: Server, client: Callable[..., GuardedHttp]) -> None:
    url = server.url("/echo")
    for _ in range(6):
        url = server.url(f"/redirect?to={url}")
    http = client(allow_private=True)
    with pytest.raises(NodeFailed, match="more than 5 redirects"):
        await http.request("GET", url, {}, None, 2, 10_000)
