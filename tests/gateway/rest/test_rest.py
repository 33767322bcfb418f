"""The REST shim over real sockets: transcoding from the google.api.http rules,
errors, headers, streams (NDJSON, SSE, WebSocket), and the gRPC server's own
interceptors applied to REST calls."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import httpx2 as httpx
import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect

from gateway.pb import dataset_pb2, dataset_pb2_grpc, router_pb2, tasks_pb2, tasks_pb2_grpc
from gateway.rest.config import RestConfig
from gateway.rest.service import RestService
from gateway.rest.transcode import BadRequest, encode, parse_message
from gateway.server import Gateway
from tests.conftest import StartGateway

HELLO = {"model": "chat", "messages": [{"role": "user", "content": "red green blue"}]}


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield client


async def test_unary_rpc_from_its_http_rule(http: httpx.AsyncClient) -> None:
    reply = await http.post("/v1/generate", json=HELLO)
    assert reply.status_code == 200
    body = reply.json()
    assert body["text"] == "red green blue red green blue red green"
    assert body["finishReason"] == "stop"  # lowerCamelCase out
    assert body["usage"] == {"inputTokens": 3, "outputTokens": 8, "totalTokens": 11}
    assert reply.headers["x-request-id"] == body["id"]


async def test_both_field_spellings_are_accepted(http: httpx.AsyncClient) -> None:
    for params in ({"max_tokens": 2}, {"maxTokens": 2}):
        reply = await http.post("/v1/generate", json={**HELLO, "params": params})
        assert reply.json()["text"] == "red green"


async def test_get_with_query_parameters(http: httpx.AsyncClient) -> None:
    reply = await http.get("/v1/models/health", params={"model": "chat"})
    assert reply.status_code == 200
    assert [d["deployment"] for d in reply.json()["deployments"]] == ["chat-a"]
    models = (await http.get("/v1/router/models")).json()["models"]
    assert {"alias": "chat", "strategy": "weighted_round_robin"}.items() <= models[0].items()


async def test_errors_follow_the_grpc_gateway_table(http: httpx.AsyncClient) -> None:
    reply = await http.post("/v1/generate", json={**HELLO, "model": "nope"})
    assert reply.status_code == 404
    assert reply.json() == {
        "code": grpc.StatusCode.NOT_FOUND.value[0],
        "message": "model 'nope' is not configured",
        "details": [],
    }
    reply = await http.post("/v1/generate", json={**HELLO, "params": {"temperature": 3}})
    assert reply.status_code == 400
    assert "params.temperature" in reply.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "words"),
    [
        ("POST", "/v1/generate", b"{not json", 400, "malformed JSON"),
        ("POST", "/v1/generate", b"[1, 2]", 400, "must be a JSON object"),
        ("POST", "/v1/generate", b'{"model": 5}', 400, "model"),
        ("POST", "/v1/generate", b'{"modle": "chat"}', 400, "modle"),
        ("GET", "/v1/models/health?nope=1", b"", 400, "nope"),
        ("GET", "/v1/nowhere", b"", 404, "no route"),
        ("DELETE", "/v1/generate", b"", 405, "allowed: POST"),
    ],
)
async def test_bad_requests_get_4xx_with_a_message(
    http: httpx.AsyncClient, method: str, path: str, content: bytes, status: int, words: str
) -> None:
    reply = await http.request(method, path, content=content)
    assert reply.status_code == status
    assert words in reply.json()["message"]
    assert reply.headers["x-request-id"]


async def test_oversized_bodies_get_413(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(top={"rest": {"port": 0, "max_body_bytes": 2048}})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        big = {**HELLO, "messages": [{"role": "user", "content": "x" * 4096}]}
        reply = await http.post("/v1/generate", json=big)
        assert reply.status_code == 413
        assert "larger than 2048 bytes" in reply.json()["message"]

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length to trust
            for _ in range(8):
                yield b" " * 512

        reply = await http.post("/v1/generate", content=chunked())
        assert reply.status_code == 413


async def test_request_id_is_kept_or_made(http: httpx.AsyncClient) -> None:
    reply = await http.post("/v1/generate", json=HELLO, headers={"x-request-id": "abc-123"})
    assert reply.headers["x-request-id"] == "abc-123"
    assert reply.json()["id"] == "abc-123"  # it reached the servicer as metadata
    missing = await http.get("/v1/nowhere")
    assert missing.headers["x-request-id"].startswith("req-")
    assert "server" not in reply.headers  # the server software is not advertised


async def test_grpc_metadata_headers_reach_the_servicer(http: httpx.AsyncClient) -> None:
    reply = await http.post(
        "/v1/route", json=HELLO, headers={"grpc-metadata-x-infergate-deployment": "nope"}
    )
    assert reply.status_code == 400
    assert "nope" in reply.json()["message"]


async def test_grpc_timeout_sets_the_deadline(http: httpx.AsyncClient) -> None:
    slow = {**HELLO, "model": "slow"}  # 1 s before its first token
    reply = await http.post("/v1/generate", json=slow, headers={"grpc-timeout": "100m"})
    assert reply.status_code == 504
    reply = await http.post("/v1/generate", json=slow, headers={"grpc-timeout": "soon"})
    assert reply.status_code == 400
    assert "Grpc-Timeout" in reply.json()["message"]


async def test_ndjson_stream(http: httpx.AsyncClient) -> None:
    async with http.stream("POST", "/v1/generate:stream", json=HELLO) as reply:
        assert reply.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) async for line in reply.aiter_lines() if line]
    deltas = "".join(line["result"].get("delta", "") for line in lines)
    assert deltas == "red green blue red green blue red green"
    assert lines[0]["result"]["deployment"] == "chat-a"
    assert lines[-1]["result"]["finishReason"] == "stop"


async def test_stream_failing_midway_ends_with_an_error(http: httpx.AsyncClient) -> None:
    cut = {**HELLO, "model": "cut"}  # breaks after 3 tokens
    reply = await http.post("/v1/generate:stream", json=cut)
    lines = [json.loads(line) for line in reply.text.splitlines()]
    assert reply.status_code == 200
    assert [list(line) for line in lines] == [["result"]] * 3 + [["error"]]
    assert lines[-1]["error"]["code"] == grpc.StatusCode.UNAVAILABLE.value[0]


async def test_stream_failing_before_its_first_message_gets_an_http_status(
    http: httpx.AsyncClient,
) -> None:
    reply = await http.post("/v1/generate:stream", json={**HELLO, "model": "nope"})
    assert reply.status_code == 404
    assert reply.json()["code"] == grpc.StatusCode.NOT_FOUND.value[0]


async def test_sse_stream(http: httpx.AsyncClient) -> None:
    headers = {"accept": "text/event-stream"}
    reply = await http.post("/v1/generate:stream", json={**HELLO, "model": "cut"}, headers=headers)
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = reply.text.strip().split("\n\n")
    assert all(e.startswith("data: {") for e in events[:3])
    assert json.loads(events[0][len("data: ") :])["result"]["delta"] == "red"
    kind, data = events[-1].split("\n")
    assert kind == "event: error"
    assert json.loads(data[len("data: ") :])["code"] == grpc.StatusCode.UNAVAILABLE.value[0]


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
async def test_websocket_streams_tokens(start_gateway: StartGateway, server: str) -> None:
    gateway = await start_gateway(top={"rest": {"port": 0, "server": server}})
    url = f"ws://127.0.0.1:{gateway.http_port}/v1/ws/generate"
    async with connect(url) as socket:
        if server == "uvicorn":  # granian drops the headers of a WebSocket accept
            assert socket.response is not None and socket.response.headers["x-request-id"]
        await socket.send(json.dumps(HELLO))
        deltas = []
        while True:
            message = json.loads(await socket.recv())
            deltas.append(message["result"].get("delta", ""))
            if message["result"].get("finishReason"):
                break
        assert "".join(deltas) == "red green blue red green blue red green"
        await socket.send(json.dumps({**HELLO, "model": "nope"}))  # the same socket again
        assert json.loads(await socket.recv())["error"]["code"] == 5
        await socket.send("{nope")
        assert "malformed JSON" in json.loads(await socket.recv())["error"]["message"]


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
async def test_idle_connections_close_after_the_idle_timeout(
    start_gateway: StartGateway, server: str
) -> None:
    gateway = await start_gateway(top={"rest": {"port": 0, "server": server, "idle_timeout_s": 1}})
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http_port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        async with asyncio.timeout(5):
            while await reader.read(4096):  # the rest of the answer, then EOF
                pass
        assert 0.5 < time.monotonic() - started < 4
    finally:
        writer.close()


async def test_healthz(http: httpx.AsyncClient, gateway: Gateway) -> None:
    assert (await http.get("/healthz")).json() == {"status": "SERVING"}
    await gateway.health.enter_graceful_shutdown()
    reply = await http.get("/healthz")
    assert (reply.status_code, reply.json()) == (503, {"status": "NOT_SERVING"})


async def test_rest_calls_are_counted_by_the_metrics_interceptor(
    http: httpx.AsyncClient,
) -> None:
    def count(code: str) -> float:
        labels = {"method": "/infergate.v1.Router/Generate", "code": code}
        return REGISTRY.get_sample_value("infergate_grpc_requests_total", labels) or 0.0

    ok, missing = count("OK"), count("NOT_FOUND")
    await http.post("/v1/generate", json=HELLO)
    await http.post("/v1/generate", json={**HELLO, "model": "nope"})
    assert (count("OK"), count("NOT_FOUND")) == (ok + 1, missing + 1)


class _KeyCheck(grpc.aio.ServerInterceptor):
    """An auth-like interceptor: refuses calls without the right bearer token."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        metadata = dict(details.invocation_metadata or ())
        if metadata.get("authorization") == "Bearer good":
            return await continuation(details)

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad key")

        return grpc.unary_unary_rpc_method_handler(refuse)


async def test_the_servers_interceptors_see_the_authorization_header(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    # The shim reads the live list. First: MetricsInterceptor caches the handler
    # the rest of the chain returned, per method.
    gateway.interceptors.insert(0, _KeyCheck())
    reply = await http.post("/v1/generate", json=HELLO)
    assert (reply.status_code, reply.json()["message"]) == (401, "bad key")
    good = await http.post("/v1/generate", json=HELLO, headers={"authorization": "Bearer good"})
    assert good.status_code == 200


class _Tasks(tasks_pb2_grpc.TasksServicer):
    """A Tasks servicer fake: Submit answers 202 with a Location, as the real one will;
    Get reads the id from the path, List the repeated/nested query parameters."""

    async def Submit(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.send_initial_metadata(
            (("x-http-code", "202"), ("location", "/v1/tasks/t1"), ("x-extra", "yes"))
        )
        return tasks_pb2.Task(id="t1", type=request.type)

    async def Get(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request.id != "t1":
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", (("retry-after", "1.5"),)
            )
        return tasks_pb2.Task(id=request.id)

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        for state in (tasks_pb2.PENDING, tasks_pb2.SUCCESS):  # via context.write()
            await context.write(tasks_pb2.Task(id=request.id, state=state))


@pytest.fixture
async def tasks_http() -> AsyncIterator[httpx.AsyncClient]:
    service = await RestService.start(
        RestConfig(port=0), [(tasks_pb2.DESCRIPTOR.services_by_name["Tasks"], _Tasks())], [], 1
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}") as client:
            yield client
    finally:
        await service.stop()


async def test_servicer_chosen_http_status_and_headers(tasks_http: httpx.AsyncClient) -> None:
    reply = await tasks_http.post("/v1/tasks", json={"type": "batch_embed"})
    assert reply.status_code == 202
    assert reply.headers["location"] == "/v1/tasks/t1"
    assert reply.headers["grpc-metadata-x-extra"] == "yes"
    assert reply.json()["type"] == "batch_embed"


async def test_path_variables_and_additional_bindings(tasks_http: httpx.AsyncClient) -> None:
    for path in ("/v1/tasks/t1", "/v1/results/t1"):
        assert (await tasks_http.get(path)).json() == {"id": "t1"}


async def test_retry_after_trailer_becomes_a_header(tasks_http: httpx.AsyncClient) -> None:
    reply = await tasks_http.get("/v1/tasks/other")
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "2"  # whole seconds, rounded up


async def test_a_streaming_handler_that_writes(tasks_http: httpx.AsyncClient) -> None:
    reply = await tasks_http.get("/v1/tasks/t9:watch")
    states = [json.loads(line)["result"]["state"] for line in reply.text.splitlines()]
    assert states == ["PENDING", "SUCCESS"]


async def test_client_disconnect_cancels_the_call(http: httpx.AsyncClient) -> None:
    paced = {**HELLO, "model": "paced"}  # 20 tokens at 100/s
    in_flight = REGISTRY.get_sample_value(
        "infergate_grpc_in_flight", {"method": "/infergate.v1.Router/GenerateStream"}
    )
    async with http.stream("POST", "/v1/generate:stream", json=paced) as reply:
        async for _ in reply.aiter_lines():
            break
    for _ in range(100):
        now = REGISTRY.get_sample_value(
            "infergate_grpc_in_flight", {"method": "/infergate.v1.Router/GenerateStream"}
        )
        if now == in_flight:
            break
        await asyncio.sleep(0.01)
    assert now == in_flight


async def test_a_taken_rest_port_fails_clearly_and_closes_the_grpc_server(
    start_gateway: StartGateway,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"REST port 127.0.0.1:{port}"):
            await start_gateway(top={"rest": {"port": port}})


class _Dataset(dataset_pb2_grpc.DatasetServicer):
    """A Dataset fake whose IngestFile reports what it received."""

    async def IngestFile(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        header, size, parts, collection = None, 0, 0, ""
        async for message in request_iterator:
            if message.HasField("header"):
                header, collection = message.header, message.collection
            else:
                size, parts = size + len(message.data), parts + 1
        assert header is not None
        return dataset_pb2.IngestFileResponse(
            document_id=f"{collection}|{header.filename}|{parts}", chunks=size
        )


@pytest.fixture
async def dataset_http() -> AsyncIterator[httpx.AsyncClient]:
    config = RestConfig(port=0, max_body_bytes=4096, max_upload_bytes=300_000)
    service = await RestService.start(
        config, [(dataset_pb2.DESCRIPTOR.services_by_name["Dataset"], _Dataset())], [], 1
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}") as client:
            yield client
    finally:
        await service.stop()


async def test_raw_upload_streams_in_data_messages(dataset_http: httpx.AsyncClient) -> None:
    reply = await dataset_http.post(
        "/v1/collections/docs/files?header.filename=a.pdf",
        content=b"x" * 200_000,
        headers={"content-type": "application/pdf"},
    )
    assert reply.status_code == 200
    assert reply.json() == {"documentId": "collections/docs|a.pdf|4", "chunks": 200_000}


async def test_ndjson_upload_is_one_message_per_line(dataset_http: httpx.AsyncClient) -> None:
    lines = [{"header": {"filename": "b.txt"}}, {"data": "aGVsbG8="}, {"data": "IQ=="}]
    reply = await dataset_http.post(
        "/v1/collections/docs/files",
        content="\n".join(json.dumps(line) for line in lines),
        headers={"content-type": "application/x-ndjson"},
    )
    assert reply.json() == {"documentId": "collections/docs|b.txt|2", "chunks": 6}


async def test_a_raw_upload_without_a_filename_is_told_in_http_terms(
    dataset_http: httpx.AsyncClient,
) -> None:
    reply = await dataset_http.post(
        "/v1/collections/docs/files", content=b"x" * 10, headers={"content-type": "text/plain"}
    )
    assert reply.status_code == 400
    assert reply.json()["message"] == (
        "a raw upload names its file in the query string: "
        "?header.filename=report.pdf (optionally header.document_id, header.mime_type)"
    )


async def test_uploads_over_the_limit_get_413(dataset_http: httpx.AsyncClient) -> None:
    reply = await dataset_http.post(
        "/v1/collections/docs/files?header.filename=a.pdf",
        content=b"x" * 400_000,
        headers={"content-type": "application/pdf"},
    )
    assert reply.status_code == 413
    assert "larger than 300000 bytes" in reply.json()["message"]


def test_response_body_selects_one_field() -> None:
    reply = router_pb2.GenerateResponse(text="hi", usage=router_pb2.Usage(output_tokens=2))
    assert encode(reply, "usage") == {"outputTokens": 2}
    assert encode(reply, "text") == "hi"
    assert encode(reply) == {"text": "hi", "usage": {"outputTokens": 2}}


def test_an_unknown_enum_value_lists_the_valid_ones() -> None:
    with pytest.raises(BadRequest) as refused:
        parse_message(
            {"text": "cats", "mode": "dense"}, dataset_pb2.SearchRequest(), "request body"
        )
    assert str(refused.value).endswith(
        "(valid values: SEARCH_MODE_DENSE, SEARCH_MODE_LEXICAL, SEARCH_MODE_HYBRID)"
    )


async def test_an_id_sent_in_the_body_is_told_where_it_goes(http: httpx.AsyncClient) -> None:
    reply = await http.post("/v1/collections", json={"collection_id": "faq", "display_name": "F"})
    assert reply.status_code == 400
    assert reply.json()["message"] == (
        "request body: collection_id is not a field of the collection; it goes in the query "
        "string (POST /v1/collections?collection_id=...)"
    )
