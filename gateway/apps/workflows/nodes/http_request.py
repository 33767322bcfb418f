"""`http_request`: call an HTTP API; status, headers, text body and parsed JSON.

    method: POST
    url: "https://api.example.com/v1/search"
    query: {q: "{{ start.question }}"}               # appended, URL-encoded
    headers: {Authorization: "Bearer {{ secrets.EXAMPLE_KEY }}"}
    body: {question: "{{ start.question }}", k: 3}   # an object is sent as JSON

Headers alone may read the tenant's secrets (`{{ secrets.NAME }}`); a secret's
value never reaches the outputs, the run record or an error (a server that
echoes it back sees it masked as ***, in the body, the parsed `json` and the
headers, JSON-escaped or not). A node whose headers read a secret has a URL
whose scheme and host are written out, not templated, so a run's inputs
cannot send the secret to another server. The gateway's client refuses private
addresses unless configured otherwise, and caps `timeout_s` and
`max_response_bytes` (apps.workflows.http_timeout_s, http_max_response_bytes:
the defaults). With `fail_on_status` (the default) a 4xx or 5xx fails the node.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping
from email.message import Message
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import charset_normalizer
import jinja2

from gateway.apps.workflows import refs
from gateway.apps.workflows.document import Node, Problem
from gateway.apps.workflows.nodes.base import NodeContext, NodeFailed, NodeType, Outcome, Shape

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
MAX_TIMEOUT_S = 600  # the most apps.workflows.http_timeout_s allows
MAX_RESPONSE_BYTES = 64 << 20  # the most apps.workflows.http_max_response_bytes allows
MASK = "***"


class HttpRequest(NodeType):
    name = "http_request"
    description = "Call an HTTP API (public addresses only, unless configured otherwise)."
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["url"],
        "properties": {
            "method": {"enum": list(METHODS), "default": "GET"},
            "url": {"type": "string", "minLength": 1, "description": "template"},
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "name -> template; may read {{ secrets.NAME }}",
            },
            "query": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "name -> template, appended to the URL",
            },
            "body": {
                "type": ["string", "object"],
                "description": "a template, or an object (its strings templates) sent as JSON",
            },
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S},
            "max_response_bytes": {
                "type": "integer", "minimum": 1, "maximum": MAX_RESPONSE_BYTES,
            },
            "fail_on_status": {"type": "boolean", "default": True},
        },
    }  # fmt: skip
    outputs: ClassVar[dict[str, str]] = {
        "status": "integer",
        "headers": "object",
        "body": "string",
        "json": "any",
    }
    literal_fields = frozenset({"method", "timeout_s", "max_response_bytes", "fail_on_status"})
    secret_fields = ("config.headers",)

    def check(self, node: Node, shape: Shape) -> list[Problem]:
        url = node.config.get("url", "")
        if not isinstance(url, str):
            return []  # the schema says so
        if not refs.is_template(url):
            scheme = urlsplit(url).scheme
            if scheme not in ("http", "https"):
                return [
                    Problem(node.id, "config.url", f"must be an http or https URL, got {url!r}")
                ]
        elif _reads_secrets(node) and not _LITERAL_ORIGIN.match(url):
            return [Problem(
                node.id, "config.url",
                "the headers read secrets, so the scheme and host must be written out, not "
                "templated (e.g. https://api.example.com/{{ ... }}): a template before the "
                "path could send the secrets to another server",
            )]  # fmt: skip
        return []

    async def run(self, ctx: NodeContext) -> Outcome:
        http = ctx.services.http
        if http is None:
            raise NodeFailed("http_request: this gateway has no HTTP client configured")
        config = ctx.node.config
        method = config.get("method", "GET")
        url = refs.text(ctx.resolve("url"))
        query = ctx.resolve("query", {})
        if query:
            url = _with_query(url, {k: refs.text(v) for k, v in query.items()})
        secrets = await _secrets(ctx)
        try:
            headers = {
                k: refs.text(v)
                for k, v in refs.resolve(
                    config.get("headers", {}), {**ctx.scope, "secrets": secrets}, "config.headers"
                ).items()
            }
            body = _body(ctx, headers)
            status, got, raw = await http.request(
                method, url, headers, body,
                float(config.get("timeout_s", MAX_TIMEOUT_S)),
                int(config.get("max_response_bytes", MAX_RESPONSE_BYTES)),
            )  # fmt: skip
        except Exception as exc:  # its message may quote a header: mask the secrets in it
            message = str(exc)
            if _mask(message, secrets) != message:
                raise NodeFailed(_mask(message, secrets)) from None
            raise
        resp_headers = {
            _mask(k.lower(), secrets): _mask_json_strings(_mask(v, secrets), secrets)
            for k, v in got.items()
        }
        content_type = resp_headers.get("content-type", "")
        decoded = _decode(raw, content_type)
        text = _mask_json_strings(_mask(decoded, secrets), secrets)
        parsed = _json(decoded, content_type)  # as sent: an escaped secret is whole there
        if secrets:
            parsed = _mask_value(parsed, secrets)
        if status >= 400 and config.get("fail_on_status", True):
            snippet = text[:200] + ("…" if len(text) > 200 else "")
            host = urlsplit(url).hostname or url
            raise NodeFailed(f"http_request: {method} {host} answered {status}: {snippet}")
        return Outcome({
            "status": status,
            "headers": resp_headers,
            "body": text,
            "json": parsed,
        })  # fmt: skip


# An http(s) URL whose scheme and host come before any template, ended by the
# path, query or fragment: `https://api.example.com/{{ x }}`, not `https://{{ h }}/`
# nor `https://api.example.com{{ x }}` (x = "@evil.example/").
_LITERAL_ORIGIN = re.compile(r"^https?://[^/?#{}%\\]+[/?#]", re.IGNORECASE)


def _reads_secrets(node: Node) -> bool:
    headers = node.config.get("headers")
    if not isinstance(headers, Mapping):
        return False
    for _, source in refs.strings(headers, "config.headers"):
        try:
            if any(name == "secrets" for name, _ in refs.references(source)):
                return True
        except refs.TemplateError:
            continue  # reported with the templates
    return False


async def _secrets(ctx: NodeContext) -> dict[str, str]:
    """The values of the secrets the headers read."""
    names = sorted({
        attr
        for _, source in refs.strings(ctx.node.config.get("headers", {}), "config.headers")
        for name, attr in refs.references(source)
        if name == "secrets" and attr
    })  # fmt: skip
    if not names:
        return {}
    if ctx.services.secrets is None:
        raise NodeFailed("http_request: this gateway has no secrets store configured")
    return await ctx.services.secrets.reveal(ctx.tenant, names)


def _mask(text: str, secrets: Mapping[str, str]) -> str:
    """`text` with every secret replaced by MASK, the longest first (a secret
    that begins another must not leave the longer one's rest showing)."""
    for value in sorted(filter(None, secrets.values()), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def _mask_json_strings(text: str, secrets: Mapping[str, str]) -> str:
    """`text` with each JSON string literal whose decoded value holds a secret
    (written with escapes, `\\/` or `\\u0041`, which `_mask` cannot see)
    rewritten masked."""
    if "\\" not in text or not any(secrets.values()):
        return text

    def masked(m: re.Match[str]) -> str:
        literal = m.group(0)
        if "\\" not in literal:
            return literal  # no escapes: `_mask` has seen it as it reads
        try:
            value = json.loads(literal)
        except ValueError:
            return literal
        hidden = _mask(value, secrets)
        return literal if hidden == value else json.dumps(hidden, ensure_ascii=False)

    return _JSON_STRING.sub(masked, text)


def _mask_value(value: Any, secrets: Mapping[str, str]) -> Any:
    """A parsed JSON value with the secrets masked in every string, keys included."""
    if isinstance(value, str):
        return _mask(value, secrets)
    if isinstance(value, Mapping):
        return {_mask(str(k), secrets): _mask_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(v, secrets) for v in value]
    return value


_JSON_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')


def _with_query(url: str, query: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    extra = urlencode(query)
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def _body(ctx: NodeContext, headers: dict[str, str]) -> bytes | None:
    """The request body; sets a content-type when the headers give none."""
    raw = ctx.node.config.get("body")
    if raw is None:
        return None
    value = ctx.resolve("body")
    typed = any(k.lower() == "content-type" for k in headers)
    if isinstance(raw, str):
        if not typed:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        return refs.text(value).encode()
    if not typed:
        headers["Content-Type"] = "application/json"
    return json.dumps(value, default=_undefined).encode()


def _undefined(value: Any) -> Any:
    if isinstance(value, jinja2.Undefined):
        return None
    raise TypeError(f"{type(value).__name__} is not JSON")


def _media(content_type: str) -> tuple[str, str | None]:
    """(media type, charset) of a Content-Type header."""
    msg = Message()
    msg["content-type"] = content_type
    return msg.get_content_type(), msg.get_content_charset()


def _decode(raw: bytes, content_type: str) -> str:
    """The body as text: its declared charset, else UTF-8, else a detected one."""
    _, charset = _media(content_type)
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            charset = None
    if charset:
        return raw.decode(charset, errors="replace")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        best = charset_normalizer.from_bytes(raw).best()
        return str(best) if best is not None else raw.decode(errors="replace")


def _json(text: str, content_type: str) -> Any:
    """The body parsed when the response is JSON (application/json, +json), else None."""
    media, _ = _media(content_type)
    if media != "application/json" and not media.endswith("+json"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
