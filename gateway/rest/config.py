"""The REST shim's config section (`rest:` in the gateway's YAML)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.graphql.config import GraphqlConfig
from router.config import Frozen


class RestConfig(Frozen):
    enabled: bool = True
    console: bool = Field(default=True, description="the web console at /console")
    # /graphql on this port (gateway/graphql, docs/graphql.md); `graphql: false` turns it off.
    graphql: GraphqlConfig = GraphqlConfig()
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535, description="0: an ephemeral port")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="larger request bodies get 413"
    )
    max_upload_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="raw-body uploads (IngestFile)"
    )
    idle_timeout_s: float = Field(
        default=75.0, ge=1, description="an idle keep-alive connection is closed after this"
    )
    # Measured in bench/rest.py (bench/RESULTS.md, issue 7); both run on the
    # gRPC server's event loop.
    server: Literal["uvicorn", "granian"] = "uvicorn"
