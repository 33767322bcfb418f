"""The web console: static files served at /console on the REST port.

No build step: ES modules (Preact + htm, uPlot for charts) loaded as they
are, the libraries vendored in `static/vendor/` from npm by `make console`
(`gateway/console/package.json` pins them; a test checks the copies are
fresh). The console is a client of the public REST API only, with the key
the user signs in with; it has no API of its own.

Every response carries a strict Content-Security-Policy: scripts, styles and
connections from this origin only, no inline script or style, no framing;
bodies are gzipped for clients that accept it (the first load is ~60 KB).
"""

from __future__ import annotations

from pathlib import Path

from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-cache"),  # revalidated (ETag): a new release shows at once
]


class _Secured:
    """The console's security headers on every response it sends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _to_index(_: object) -> RedirectResponse:
    return RedirectResponse("/console/", status_code=308)


def routes() -> list[BaseRoute]:
    files = _Secured(StaticFiles(directory=STATIC, html=True))
    return [
        Route("/console", _to_index, methods=["GET", "HEAD"]),
        Mount(
            "/console",
            app=GZipMiddleware(files, minimum_size=500),
            name="console",
        ),
    ]
