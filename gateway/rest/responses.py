"""JSON responses in the shim's two shapes: a message and a google.rpc.Status."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from gateway.rest.call import CallError
from gateway.rest.status import HTTP_STATUS, response_headers, status_json


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def error_response(exc: CallError) -> Response:
    """A failed call: grpc-gateway's HTTP status, the Status body, its metadata as headers."""
    headers: dict[str, str] = {}
    if exc.context is not None:
        _, headers = response_headers(exc.context.initial_metadata, exc.context.trailing)
    status = HTTP_STATUS.get(exc.code, 500)
    return JSONResponse(status_json(exc.code, exc.message), status, headers)
