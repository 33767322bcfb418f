"""Request validation: every error names the offending field."""

from __future__ import annotations

import re
from collections.abc import Sequence

from router.errors import InvalidRequest
from router.types import ROLES, Message, Params, Request

# Far above any model's context, low enough that a typo cannot ask for an
# answer no message size limit could carry.
MAX_TOKENS_LIMIT = 1 << 20
RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})
TOOL_CHOICES = frozenset({"", "auto", "none", "required"})
MAX_RERANK_DOCUMENTS = 1000  # Cohere's own limit per call
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def validate(request: Request) -> None:
    if not request.model:
        raise InvalidRequest("model", "is required")
    if not request.messages:
        raise InvalidRequest("messages", "must not be empty")
    for i, message in enumerate(request.messages):
        _message(message, f"messages[{i}]")
    _params(request.params)


def validate_rerank(model: str, query: str, documents: Sequence[str], top_n: int) -> None:
    if not model:
        raise InvalidRequest("model", "is required")
    if not query.strip():
        raise InvalidRequest("query", "must not be empty")
    if not 1 <= len(documents) <= MAX_RERANK_DOCUMENTS:
        raise InvalidRequest(
            "documents", f"must hold 1 to {MAX_RERANK_DOCUMENTS} texts, got {len(documents)}"
        )
    if top_n < 0:  # above the number of documents: all of them, as Cohere and Jina answer
        raise InvalidRequest("top_n", f"must not be negative (0: all), got {top_n}")


def _message(message: Message, where: str) -> None:
    if message.role not in ROLES:
        raise InvalidRequest(
            f"{where}.role", f"must be one of {sorted(ROLES)}, got {message.role!r}"
        )
    if not (message.content or message.parts or message.tool_calls):
        raise InvalidRequest(f"{where}.content", "must not be empty")
    for j, part in enumerate(message.parts):
        if not (part.text or part.image_url):
            raise InvalidRequest(f"{where}.parts[{j}]", "needs text or image_url")
    if message.role == "tool" and not message.tool_call_id:
        raise InvalidRequest(f"{where}.tool_call_id", "is required for role 'tool'")


def _params(params: Params) -> None:
    if params.temperature is not None and not 0.0 <= params.temperature <= 2.0:
        raise InvalidRequest("params.temperature", f"must be in [0, 2], got {params.temperature}")
    if params.top_p is not None and not 0.0 <= params.top_p <= 1.0:
        raise InvalidRequest("params.top_p", f"must be in [0, 1], got {params.top_p}")
    if params.max_tokens is not None and not 0 < params.max_tokens <= MAX_TOKENS_LIMIT:
        raise InvalidRequest(
            "params.max_tokens", f"must be in [1, {MAX_TOKENS_LIMIT}], got {params.max_tokens}"
        )
    for i, stop in enumerate(params.stop):
        if not stop:
            raise InvalidRequest(f"params.stop[{i}]", "must not be empty")
    fmt = params.response_format
    if fmt is not None:
        if fmt.type not in RESPONSE_FORMATS:
            raise InvalidRequest(
                "params.response_format.type",
                f"must be one of {sorted(RESPONSE_FORMATS)}, got {fmt.type!r}",
            )
        if fmt.type == "json_schema" and not fmt.json_schema:
            raise InvalidRequest(
                "params.response_format.json_schema", "is required for json_schema"
            )
    names = set()
    for i, tool in enumerate(params.tools):
        if not _TOOL_NAME.match(tool.name):
            raise InvalidRequest(
                f"params.tools[{i}].name", f"must match {_TOOL_NAME.pattern}, got {tool.name!r}"
            )
        if tool.name in names:
            raise InvalidRequest(f"params.tools[{i}].name", f"{tool.name!r} is repeated")
        names.add(tool.name)
    if params.tool_choice not in TOOL_CHOICES and params.tool_choice not in names:
        raise InvalidRequest(
            "params.tool_choice",
            f"must be auto, none, required or a tool's name, got {params.tool_choice!r}",
        )
