"""One vendor endpoint that takes JSON POSTs, over adapters/http1: what the chat
paths of the openai and anthropic adapters share.

`Endpoint.post` encodes the body (orjson: the bytes a dry run shows), sends it
with the deployment's headers and the upstream trace span, and returns the
answer once its status is 2xx, else the router's error for the status
(`_http.status_error`). `sdk_endpoint` makes one with a vendor SDK client's
URL, headers and proxy; `failed` turns a transport failure into the router's
error; `lines` splits a streamed body into SSE lines.

The SDKs stay for what is not on the hot path (embeddings, probes): for a
chat call, their typed models and transports cost up to 20x the client CPU of
this path (bench/RESULTS.md, issues 7, 15 and 24).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx2
import orjson

from adapters import _http, http1
from router import spans
from router.errors import ErrorKind, ProviderError

# Under the 5 s idle close of uvicorn-based servers (vLLM): an idle
# connection is dropped here before the server drops it.
KEEPALIVE_S = 4.0


class Endpoint:
    """POSTs to one URL through a keep-alive pool of `max_connections`. With
    no deadline, each wait (connect, each read) is bounded by `timeout_s`, as
    the SDKs' are."""

    def __init__(
        self,
        vendor: str,
        url: str,
        headers: Mapping[str, str],
        *,
        max_connections: int,
        timeout_s: float,
        proxy: http1.Proxy | None,
    ) -> None:
        self.vendor = vendor
        self.span = _http.span_attributes(url)
        self._headers = dict(headers)
        self._path = urlsplit(url).path
        self._timeout_s = timeout_s
        self._pool = http1.Pool(
            url,
            max_connections=max_connections,
            keepalive_s=KEEPALIVE_S,
            connect_timeout_s=timeout_s,
            ssl_context=httpx2.create_ssl_context(),  # the SDKs' trust store
            proxy=proxy,
        )

    async def post(self, body: Mapping[str, Any], deadline: float | None) -> http1.Reply:
        """The answer, once its status is 2xx (close it: `async with`), else
        the translated ProviderError; TIMEOUT at once past `deadline`."""
        _http.remaining(deadline, self.vendor)
        idle = self._timeout_s if deadline is None else None
        data = encode(body, self.vendor)
        if not spans.ON:
            return await self._checked(await self._request(data, self._headers, deadline, idle))
        headers = dict(self._headers)
        with spans.upstream(self.span, headers) as span:
            answer = await self._request(data, headers, deadline, idle)
            span.set_attribute(_http.STATUS, answer.status)
            return await self._checked(answer)

    async def answer(self, body: Mapping[str, Any], deadline: float | None) -> Any:
        """`post`, then the whole answer parsed as JSON: a unary call. A
        transport failure is translated (`failed`), an answer that is not JSON
        is UPSTREAM_5XX."""
        try:
            async with await self.post(body, deadline) as reply:
                return orjson.loads(await reply.read())
        except (http1.Disconnected, TimeoutError) as exc:
            raise failed(exc, self.vendor, started=False) from exc
        except ValueError as exc:  # not JSON: the upstream is not speaking the protocol
            message = f"{self.vendor}: bad answer: {exc}"
            raise ProviderError(ErrorKind.UPSTREAM_5XX, message) from exc

    async def _request(
        self, data: bytes, headers: Mapping[str, str], deadline: float | None, idle: float | None
    ) -> http1.Reply:
        try:
            return await self._pool.request(
                "POST", self._path, data, headers, deadline=deadline, read_timeout=idle
            )
        except ValueError as exc:  # a header the configuration gave cannot be sent
            raise ProviderError(ErrorKind.BAD_REQUEST, f"{self.vendor}: {exc}") from None

    async def _checked(self, answer: http1.Reply) -> http1.Reply:
        """`answer` when its status is 2xx, else (read and closed) the ProviderError."""
        if not 200 <= answer.status < 300:
            async with answer:
                text = await answer.read()
            message = _http.error_message(text)
            raise _http.status_error(self.vendor, answer.status, answer.headers, message)
        return answer

    async def aclose(self) -> None:
        await self._pool.aclose()


def failed(exc: BaseException, vendor: str, *, started: bool) -> ProviderError:
    """A transport failure (or its timeout) as the router's error. A connection
    refused, dropped or cut mid-body is UNAVAILABLE before any data and
    INTERRUPTED after."""
    if isinstance(exc, TimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, f"{vendor}: no answer before the deadline")
    if isinstance(exc, http1.Disconnected):
        kind = ErrorKind.INTERRUPTED if started else ErrorKind.UNAVAILABLE
        return ProviderError(kind, f"{vendor}: connection failed: {exc}")
    return ProviderError(ErrorKind.UPSTREAM_5XX, f"{vendor}: {type(exc).__name__}: {exc}")


async def lines(answer: http1.Reply) -> AsyncIterator[bytes]:
    """The body's lines without their endings (LF, CRLF or CR, as SSE allows),
    from one read per network chunk. A CRLF split across two reads yields an
    extra empty line, which SSE ignores anyway."""
    rest = b""
    async for data in answer.chunks():
        found = (rest + data).splitlines(keepends=True)
        rest = b"" if found[-1].endswith((b"\n", b"\r")) else found.pop()
        for line in found:
            yield line.rstrip(b"\r\n")
    if rest:
        yield rest


def sdk_endpoint(
    vendor: str,
    client: Any,
    http_client: httpx2.AsyncClient,
    path: str,
    *,
    max_connections: int,
    timeout_s: float,
) -> Endpoint:
    """The Endpoint at `path` under a vendor SDK client's base URL, sending
    every header that client sends (its defaults and its auth, read once) and
    going through the proxy its own `http_client` would use."""
    url = str(client.base_url.join(path))
    headers = {**client.default_headers, **client.auth_headers}
    return Endpoint(
        vendor,
        url,
        {k: v for k, v in headers.items() if isinstance(v, str)},  # not the SDK's Omit
        max_connections=max_connections,
        timeout_s=timeout_s,
        proxy=_proxy_for(http_client, url),
    )


def _proxy_for(http_client: httpx2.AsyncClient, url: str) -> http1.Proxy | None:
    """The proxy the SDK's own client would use for `url`: httpx2's reading of
    HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY (wildcards, CIDRs, ports), at
    start; None when it goes direct. The openai SDK's aiohttp transport keeps
    it as `proxy`; httpx2's own transport (the anthropic SDK's) in its
    httpcore proxy pool, with the URL's credentials already in its headers."""
    transport = http_client._transport_for_url(httpx2.URL(url))
    proxy: httpx2.Proxy | None = getattr(transport, "proxy", None)
    if proxy is not None:
        return http1.Proxy(str(proxy.url), dict(proxy.headers), proxy.auth)
    pool: Any = getattr(transport, "_pool", None)
    where = getattr(pool, "_proxy_url", None)
    if where is None:
        return None
    scheme, host = where.scheme.decode("ascii"), where.host.decode("ascii")
    host = f"[{host}]" if ":" in host else host
    port = f":{where.port}" if where.port else ""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in pool._proxy_headers}
    return http1.Proxy(f"{scheme}://{host}{port}", headers)


def encode(body: Mapping[str, Any], vendor: str) -> bytes:
    """A request body as it goes on the wire (what a dry run shows, byte for
    byte): compact UTF-8 JSON, keys in order."""
    try:
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:  # orjson.JSONEncodeError: a huge integer, a lone surrogate
        message = f"{vendor}: the body is not JSON: {exc}"
        raise ProviderError(ErrorKind.BAD_REQUEST, message) from None
