"""The schema: every area's queries merged into one Query, the mutations and
subscriptions, and the protections (depth, cost, tokens, aliases, introspection)."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from gateway.graphql.admin import AdminQueries
from gateway.graphql.apps import AppQueries
from gateway.graphql.collections import CollectionQueries
from gateway.graphql.config import GraphqlConfig
from gateway.graphql.convert import SCALARS
from gateway.graphql.errors import CodedErrors, GatewaySchema
from gateway.graphql.limits import cost_limit
from gateway.graphql.models import ModelQueries
from gateway.graphql.mutations import Mutation
from gateway.graphql.subscriptions import Subscription
from gateway.graphql.tasks import TaskQueries
from gateway.graphql.usage import UsageQueries
from gateway.graphql.workflows import WorkflowQueries

Query = merge_types(
    "Query",
    (AdminQueries, ModelQueries, CollectionQueries, AppQueries, WorkflowQueries,
     TaskQueries, UsageQueries),
)  # fmt: skip


def build_schema(config: GraphqlConfig) -> strawberry.Schema:
    # Factories, not instances: strawberry makes a fresh extension per request.
    extensions: list[Callable[[], SchemaExtension] | type[SchemaExtension]] = [
        CodedErrors,
        lambda: MaxTokensLimiter(max_token_count=config.max_tokens),
        lambda: MaxAliasesLimiter(max_alias_count=config.max_aliases),
        lambda: QueryDepthLimiter(max_depth=config.max_depth),
        lambda: AddValidationRules([cost_limit(config.max_cost)]),
    ]
    if not config.introspection:
        extensions.append(DisableIntrospection)
    return GatewaySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALARS),
    )
