"""App CRUD for the caller's tenant, with every field checked at save time."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

from gateway import identity
from gateway.apps import prompt
from gateway.apps.model import App
from gateway.apps.store.apps import AppRepository
from gateway.errors import InvalidArgument

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_COLLECTION = re.compile(r"^collections/[^/]+$")
MAX_K = 50
MAX_RERANK_TOP_N = 1000


def check_id(value: str, field: str) -> str:
    if not _ID.match(value):
        raise InvalidArgument(
            field, f"must be 1-63 lowercase letters, digits or '-', starting alnum; got {value!r}"
        )
    return value


class AppCatalog:
    """`models` lists the Router's aliases now (it follows hot reloads);
    `check_params` raises InvalidArgument for unusable generation params.
    Writes are audited as the calling key."""

    def __init__(
        self,
        apps: AppRepository,
        models: Callable[[], Collection[str]],
        check_params: Callable[[App], None],
    ) -> None:
        self._apps = apps
        self._models = models
        self._check_params = check_params

    def check(self, app: App) -> None:
        check_id(app.id, "app_id")
        if app.model not in self._models():
            raise InvalidArgument("app.model", f"no model alias {app.model!r} in the router")
        prompt.check(app.prompt_template or prompt.DEFAULT_TEMPLATE)
        retrieval = app.retrieval
        for i, name in enumerate(retrieval.collections):
            if not _COLLECTION.match(name):
                raise InvalidArgument(
                    f"app.retrieval.collections[{i}]", f"must be collections/{{id}}, got {name!r}"
                )
        if not 1 <= retrieval.k <= MAX_K:
            raise InvalidArgument("app.retrieval.k", f"must be in [1, {MAX_K}], got {retrieval.k}")
        if not 0.0 <= retrieval.score_threshold <= 1.0:
            raise InvalidArgument(
                "app.retrieval.score_threshold",
                f"must be in [0, 1], got {retrieval.score_threshold:g}",
            )
        if not 0 <= retrieval.rerank_top_n <= MAX_RERANK_TOP_N:
            raise InvalidArgument(
                "app.retrieval.rerank_top_n",
                f"must be in [0, {MAX_RERANK_TOP_N}] (0: 50), got {retrieval.rerank_top_n}",
            )
        self._check_params(app)

    async def create(self, app: App) -> App:
        self.check(app)
        return await self._apps.create(app, actor())

    async def get(self, app_id: str) -> App:
        return await self._apps.get(identity.current().tenant, app_id)

    async def list(self, limit: int, after: str = "") -> list[App]:
        return await self._apps.list(identity.current().tenant, limit, after)

    async def update(self, app: App) -> App:
        self.check(app)
        return await self._apps.update(app, actor())

    async def delete(self, app_id: str) -> None:
        await self._apps.delete(identity.current().tenant, app_id, actor())


def actor() -> str:
    """Who the audit log names for the running call."""
    principal = identity.current()
    if principal.key_id is None:
        return f"tenants/{principal.tenant}/anonymous"
    return f"tenants/{principal.tenant}/keys/{principal.key_id}"
