"""The GraphQL endpoint's config section (`rest.graphql:` in the gateway's YAML;
`rest.graphql: false` turns it off, `true` keeps the defaults)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from router.config import Frozen


class GraphqlConfig(Frozen):
    enabled: bool = Field(default=True, description="POST/GET /graphql and its WebSocket")
    graphiql: bool = Field(default=False, description="the GraphiQL page on GET /graphql")
    introspection: bool = Field(default=True, description="__schema and __type queries")
    max_depth: int = Field(default=10, ge=2, description="deeper queries are refused")
    max_cost: int = Field(
        default=5000, ge=1, description="fields a query may resolve, lists counted at `first`"
    )
    max_tokens: int = Field(default=2000, ge=10, description="tokens in one query document")
    max_aliases: int = Field(default=30, ge=1, description="aliases in one query document")
    max_subscriptions: int = Field(default=20, ge=1, description="per WebSocket connection")

    @model_validator(mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        """`graphql: true|false` is short for `graphql: {enabled: ...}`."""
        return {"enabled": value} if isinstance(value, bool) else value
