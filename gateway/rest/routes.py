"""The transcoding endpoint: any HTTP request -> the RPC its google.api.http
binding names -> the JSON answer. No route is written per RPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.pb import router_pb2
from gateway.rest.bindings import Binding
from gateway.rest.call import CallError
from gateway.rest.methods import GENERATE_STREAM
from gateway.rest.responses import JSONResponse, error_response
from gateway.rest.shim import HttpError, Shim
from gateway.rest.status import response_headers, status_json
from gateway.rest.streaming import stream_response
from gateway.rest.transcode import BadRequest, decode, encode, parse_json, parse_message

_UPLOAD_CHUNK = 64 * 1024
_JSON_TYPES = ("application/json", "application/x-ndjson", "")


async def transcode(request: Request) -> Response:
    shim: Shim = request.app.state.shim
    found = shim.routes.find(request.method, request.url.path)
    if isinstance(found, list):
        if not found:
            raise HttpError(grpc.StatusCode.NOT_FOUND, f"no route for {request.url.path}")
        raise HttpError(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{request.method} not allowed on {request.url.path}; allowed: {', '.join(found)}",
            405,
            {"allow": ", ".join(found)},
        )
    binding, variables = found
    if binding.client_streaming:
        return await _client_stream(shim, request, binding, variables)
    raw = await shim.body(request) if binding.body else b""
    body = parse_json(raw) if raw.strip() else None
    message = _decode(binding, variables, body, request)
    context = shim.context(request)

    def encoder(message: Message) -> Any:
        return encode(message, binding.response_body)

    if binding.server_streaming:
        batches = shim.calls.batches(binding.method, message, context)
        return await stream_response(batches, context, encoder, request.headers.get("accept", ""))
    try:
        reply = await shim.calls.unary(binding.method, message, context)
    except CallError as exc:
        return error_response(exc)
    status, headers = response_headers(context.initial_metadata, context.trailing)
    return JSONResponse(encoder(reply), status or 200, headers)


def _decode(
    binding: Binding,
    variables: dict[str, str],
    body: Any,
    request: Request,
    body_field: str | None = None,
) -> Message:
    try:
        return decode(binding, variables, body, request.query_params.multi_items(), body_field)
    except BadRequest as exc:
        raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None


async def _client_stream(
    shim: Shim, request: Request, binding: Binding, variables: dict[str, str]
) -> Response:
    """A client-streaming RPC (Dataset.IngestFile). JSON or NDJSON bodies carry one
    request message per line (grpc-gateway's way); any other content type is a
    raw upload: the first message comes from the path and query
    (`?header.filename=a.pdf`), then the body streams in `data` chunks, never
    held whole in memory."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    overflow: list[HttpError] = []
    if kind in _JSON_TYPES:
        lines = [line for line in (await shim.body(request)).splitlines() if line.strip()]
        messages = [
            _decode(binding, variables, parse_json(line, f"request line {i + 1}"), request)
            for i, line in enumerate(lines)
        ]
        requests: AsyncIterator[Any] = _each(messages)
    else:
        first = _decode(binding, variables, None, request, body_field="")
        if "header" in first.DESCRIPTOR.fields_by_name and not first.HasField("header"):
            raise BadRequest(
                "a raw upload names its file in the query string: "
                "?header.filename=report.pdf (optionally header.document_id, header.mime_type)"
            )
        requests = _upload(shim, request, binding, first, overflow)
    context = shim.context(request)
    try:
        reply = await shim.calls.unary(binding.method, None, context, requests)
    except CallError as exc:
        if overflow:  # the servicer saw the upload fail; say why
            raise overflow[0] from None
        return error_response(exc)
    status, headers = response_headers(context.initial_metadata, context.trailing)
    return JSONResponse(encode(reply, binding.response_body), status or 200, headers)


async def _each(messages: list[Message]) -> AsyncIterator[Message]:
    for message in messages:
        yield message


async def _upload(
    shim: Shim, request: Request, binding: Binding, first: Message, overflow: list[HttpError]
) -> AsyncIterator[Message]:
    yield first
    limit, size, pending = shim.config.max_upload_bytes, 0, b""
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            error = HttpError(
                grpc.StatusCode.INVALID_ARGUMENT, f"upload: larger than {limit} bytes", 413
            )
            overflow.append(error)
            raise error
        pending += chunk
        while len(pending) >= _UPLOAD_CHUNK:
            yield binding.request_class(data=pending[:_UPLOAD_CHUNK])
            pending = pending[_UPLOAD_CHUNK:]
    if pending:
        yield binding.request_class(data=pending)


SOCKET_PROTOCOL = "infergate.v1"
_BEARER = "bearer."


def _socket_credentials(websocket: WebSocket) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """The subprotocol to accept, and the API key a browser sent. A browser's
    WebSocket cannot set an Authorization header, only subprotocols: it offers
    `infergate.v1` and `bearer.<key>`, and `infergate.v1` is the one accepted
    (offered alone, the bearer one is echoed: the handshake must name one of
    those offered). A real Authorization header wins."""
    offered: list[str] = websocket.scope.get("subprotocols", [])
    bearer = next((p for p in offered if p.startswith(_BEARER)), None)
    extra: tuple[tuple[str, str], ...] = ()
    if bearer is not None and "authorization" not in websocket.headers:
        extra = (("authorization", f"Bearer {bearer.removeprefix(_BEARER)}"),)
    return (SOCKET_PROTOCOL if SOCKET_PROTOCOL in offered else bearer), extra


async def generate_socket(websocket: WebSocket) -> None:
    """WebSocket /v1/ws/generate: send a GenerateRequest as JSON text, receive one
    `{"result": GenerateChunk}` per chunk and, on failure, `{"error": Status}`;
    then send the next request on the same socket. Closing the socket cancels
    the call in flight. The key: an Authorization header, or from a browser
    the subprotocol `bearer.<key>` (see _socket_credentials)."""
    shim: Shim = websocket.app.state.shim
    protocol, credentials = _socket_credentials(websocket)
    await websocket.accept(subprotocol=protocol)
    try:
        while True:
            text = await websocket.receive_text()
            try:
                message = router_pb2.GenerateRequest()
                tree = parse_json(text.encode(), "message")
                if not isinstance(tree, dict):
                    raise BadRequest("message: must be a JSON object (a GenerateRequest)")
                parse_message(tree, message, "message")
                context = shim.context(websocket, credentials)
            except (BadRequest, HttpError) as exc:
                await websocket.send_json({"error": _bad(exc)})
                continue
            try:
                async for chunk in shim.calls.stream(GENERATE_STREAM, message, context):
                    await websocket.send_json({"result": json_format.MessageToDict(chunk)})
            except CallError as exc:
                await websocket.send_json({"error": status_json(exc.code, exc.message)})
    except (WebSocketDisconnect, OSError):  # OSError: a send after the server closed it
        return


def _bad(exc: Exception) -> dict[str, object]:
    return status_json(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
