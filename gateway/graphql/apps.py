"""Apps, with the collections they retrieve from and the model they call,
each loaded in one batch per query."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from gateway.graphql.collections import Collection, collections_loader
from gateway.graphql.context import GraphContext
from gateway.graphql.convert import time_of
from gateway.graphql.models import Model, models_loader
from gateway.graphql.pagination import DEFAULT_FIRST, Connection, Page
from gateway.graphql.rpcs import APP
from gateway.pb import app_pb2 as pb


@strawberry.type
class App:
    name: str
    display_name: str
    model_alias: str
    prompt_template: str
    collection_names: list[str]
    retrieval_k: int
    create_time: datetime | None
    update_time: datetime | None

    @classmethod
    def from_pb(cls, a: pb.AppSpec) -> App:
        return cls(
            name=a.name, display_name=a.display_name, model_alias=a.model,
            prompt_template=a.prompt_template, collection_names=list(a.retrieval.collections),
            retrieval_k=a.retrieval.k, create_time=time_of(a, "create_time"),
            update_time=time_of(a, "update_time"),
        )  # fmt: skip

    @strawberry.field(description="The model alias it calls; null if the router has none")
    async def model(self, info: Info[GraphContext, None]) -> Model | None:
        found: Model | None = await info.context.loader("models", models_loader).load(
            self.model_alias
        )
        return found

    @strawberry.field(description="The collections it retrieves from that still exist")
    async def collections(self, info: Info[GraphContext, None]) -> list[Collection]:
        loader = info.context.loader("collections", collections_loader)
        found: list[Collection | None] = await loader.load_many(self.collection_names)
        return [c for c in found if c is not None]


@strawberry.type
class AppQueries:
    @strawberry.field(description="The caller's tenant's apps")
    async def apps(
        self, info: Info[GraphContext, None], first: int = DEFAULT_FIRST, after: str | None = None
    ) -> Connection[App]:
        page = Page.of(first, after)
        request = pb.ListAppsRequest(page_size=page.size, page_token=page.token)
        reply = await info.context.unary(APP["ListApps"], request)
        return page.connection(reply.apps, reply.next_page_token, App.from_pb)

    @strawberry.field(description='"apps/{id}"; NOT_FOUND when absent or not yours')
    async def app(self, info: Info[GraphContext, None], name: str) -> App:
        return App.from_pb(await info.context.unary(APP["GetApp"], pb.GetAppRequest(name=name)))
