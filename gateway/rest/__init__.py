"""The REST shim: HTTP/JSON for every RPC (transcoded from the protos'
google.api.http rules), OpenAI- and Anthropic-compatible routes, NDJSON/SSE
streams and a WebSocket, all calling the servicers in-process through the
gRPC server's own interceptors, on the gRPC server's event loop.

Start it with `gateway.rest.service.RestService`; this package's top level
stays light because the config module imports it.
"""

from gateway.rest.config import RestConfig

__all__ = ["RestConfig"]
