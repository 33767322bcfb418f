"""gRPC status -> HTTP: grpc-gateway's table, google.rpc.Status bodies, and the
headers that carry metadata both ways."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterable, Mapping

import grpc

from gateway.rest.context import Metadata

C = grpc.StatusCode
HTTP_STATUS = {
    C.OK: 200,
    C.CANCELLED: 499,
    C.UNKNOWN: 500,
    C.INVALID_ARGUMENT: 400,
    C.DEADLINE_EXCEEDED: 504,
    C.NOT_FOUND: 404,
    C.ALREADY_EXISTS: 409,
    C.PERMISSION_DENIED: 403,
    C.UNAUTHENTICATED: 401,
    C.RESOURCE_EXHAUSTED: 429,
    C.FAILED_PRECONDITION: 400,
    C.ABORTED: 409,
    C.OUT_OF_RANGE: 400,
    C.UNIMPLEMENTED: 501,
    C.INTERNAL: 500,
    C.UNAVAILABLE: 503,
    C.DATA_LOSS: 500,
}
# Request headers passed on as metadata under their own name.
_FORWARDED = (
    "authorization", "x-request-id", "x-infergate-deployment", "x-infergate-cache",
    "traceparent", "tracestate",
)  # fmt: skip
_METADATA_PREFIX = "grpc-metadata-"
_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def status_json(code: grpc.StatusCode, message: str) -> dict[str, object]:
    """A google.rpc.Status in its JSON form."""
    return {"code": code.value[0], "message": message, "details": []}


def request_id(headers: Mapping[str, str]) -> str:
    return headers.get("x-request-id") or "req-" + secrets.token_hex(12)


def metadata_from(headers: Iterable[tuple[str, str]], rid: str) -> Metadata:
    """gRPC metadata for an HTTP request's headers (names already lower-case)."""
    found: list[tuple[str, str]] = [("x-request-id", rid)]
    for name, value in headers:
        if name.startswith(_METADATA_PREFIX):
            found.append((name[len(_METADATA_PREFIX) :], value))
        elif name in _FORWARDED and name != "x-request-id":
            found.append((name, value))
    return tuple(found)


def timeout_from(value: str | None) -> float | None:
    """Seconds from a Grpc-Timeout header ("10S", "250m"); ValueError if malformed."""
    if not value:
        return None
    found = _TIMEOUT.match(value.strip())
    if found is None:
        raise ValueError(f"Grpc-Timeout: malformed {value!r} (want e.g. 10S or 250m)")
    return int(found.group(1)) * _UNITS[found.group(2)]


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _whole_seconds(text: str) -> str:
    """HTTP's Retry-After takes whole seconds; the trailer may carry "0.5"."""
    try:
        return str(max(1, math.ceil(float(text))))
    except ValueError:
        return text


def response_headers(
    initial: Iterable[tuple[str, str | bytes]], trailing: Iterable[tuple[str, str | bytes]]
) -> tuple[int | None, dict[str, str]]:
    """The HTTP status a servicer asked for (`x-http-code`) and the headers for
    its metadata: Grpc-Metadata-*/Grpc-Trailer-*, plus Location, Retry-After and
    X-Infergate-Cost."""
    status: int | None = None
    headers: dict[str, str] = {}
    for prefix, metadata in (("grpc-metadata-", initial), ("grpc-trailer-", trailing)):
        for key, value in metadata:
            if key.endswith("-bin"):
                continue
            text = _text(value)
            if key == "x-http-code" and text.isdigit():
                status = int(text)
            elif key == "location":
                headers["location"] = text
            elif key == "retry-after":
                headers["retry-after"] = _whole_seconds(text)
            elif key == "x-infergate-cost":  # the call's cost in USD, under its own name
                headers[key] = text
            else:
                headers[prefix + key] = text
    return status, headers
