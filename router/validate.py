"""Request validation: every error names the offending field."""

from __future__ import annotations

from router.errors import InvalidRequest
from router.types import ROLES, Request


def validate(request: Request) -> None:
    if not request.model:
        raise InvalidRequest("model", "is required")
    if not request.messages:
        raise InvalidRequest("messages", "must not be empty")
    for i, message in enumerate(request.messages):
        if message.role not in ROLES:
            raise InvalidRequest(
                f"messages[{i}].role", f"must be one of {sorted(ROLES)}, got {message.role!r}"
            )
    params = request.params
    if params.temperature is not None and not 0.0 <= params.temperature <= 2.0:
        raise InvalidRequest("params.temperature", f"must be in [0, 2], got {params.temperature}")
    if params.top_p is not None and not 0.0 <= params.top_p <= 1.0:
        raise InvalidRequest("params.top_p", f"must be in [0, 1], got {params.top_p}")
    if params.max_tokens is not None and params.max_tokens <= 0:
        raise InvalidRequest("params.max_tokens", f"must be > 0, got {params.max_tokens}")
    for i, stop in enumerate(params.stop):
        if not stop:
            raise InvalidRequest(f"params.stop[{i}]", "must not be empty")
