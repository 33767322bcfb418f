"""The access rules hold on /graphql exactly as on gRPC: no key, a key without
the role, another tenant's objects (absent exactly like missing ones)."""

from __future__ import annotations

import pytest

from gateway.server import Gateway
from tests.gateway.graphql.client import codes, query
from tests.gateway.graphql.conftest import Keys

ADMIN_ONLY = [
    "{ tenants { nodes { name } } }",
    '{ apiKeys(tenant: "tenants/acme") { name } }',
    "{ auditEvents { nodes { action } } }",
]


async def test_no_key_is_unauthenticated(gateway: Gateway, keys: Keys) -> None:
    for document in ("{ caller { tenant } }", "{ apps { nodes { name } } }", *ADMIN_ONLY):
        reply = await query(gateway.http_port, document)
        assert codes(reply) == ["UNAUTHENTICATED"], (document, reply)
        assert reply["data"] is None


@pytest.mark.parametrize("document", ADMIN_ONLY)
async def test_admin_only_fields_refuse_other_roles(
    gateway: Gateway, keys: Keys, document: str
) -> None:
    for key in (keys.acme_user, keys.acme_dev):
        reply = await query(gateway.http_port, document, key=key)
        assert codes(reply) == ["PERMISSION_DENIED"], reply
        assert "needs role admin" in reply["errors"][0]["message"]
        assert set(reply["errors"][0]["extensions"]) == {"code"}  # no trace, nothing else
    reply = await query(gateway.http_port, document, key=keys.admin)
    assert "errors" not in reply, reply


async def test_a_refused_field_leaves_the_rest_of_the_answer(gateway: Gateway, keys: Keys) -> None:
    """Model health is developer-only: a user's dashboard gets its apps, and
    PERMISSION_DENIED where it asked for health."""
    document = "{ apps { nodes { name model { alias health { healthy } } } } }"
    reply = await query(gateway.http_port, document, key=keys.acme_user)
    assert codes(reply) == ["PERMISSION_DENIED"]
    assert reply["errors"][0]["path"] == ["apps", "nodes", 0, "model", "health"]
    assert reply["data"]["apps"]["nodes"][0]["name"] == "apps/helpdesk"


async def test_the_admin_sees_every_tenant_and_its_keys(gateway: Gateway, keys: Keys) -> None:
    document = '{ tenants { nodes { name } } apiKeys(tenant: "tenants/acme") { role prefix } }'
    reply = await query(gateway.http_port, document, key=keys.admin)
    names = {t["name"] for t in reply["data"]["tenants"]["nodes"]}
    assert {"tenants/acme", "tenants/beta"} <= names
    assert sorted(k["role"] for k in reply["data"]["apiKeys"]) == ["developer", "user"]
    prefixes = [k["prefix"] for k in reply["data"]["apiKeys"]]
    assert all(prefixes) and any(keys.acme_dev.startswith(p) for p in prefixes)


async def test_a_tenant_sees_only_its_own_apps_collections_and_usage(
    gateway: Gateway, keys: Keys
) -> None:
    document = """{ caller { tenant } apps { nodes { name } } collections { nodes { name } }
                   workflows { nodes { name } }
                   usage(start: "2000-01-01T00:00:00Z", groupBy: [TENANT]) { tenant } }"""
    acme = await query(gateway.http_port, document, key=keys.acme_dev)
    beta = await query(gateway.http_port, document, key=keys.beta_dev)
    assert [a["name"] for a in acme["data"]["apps"]["nodes"]] == ["apps/helpdesk"]
    assert [a["name"] for a in beta["data"]["apps"]["nodes"]] == ["apps/beta-bot"]
    assert [c["name"] for c in acme["data"]["collections"]["nodes"]] == ["collections/handbook"]
    assert beta["data"]["collections"]["nodes"] == []
    assert beta["data"]["workflows"]["nodes"] == []
    assert {row["tenant"] for row in beta["data"]["usage"]} <= {"tenants/beta"}


@pytest.mark.parametrize(
    "field",
    ['app(name: "apps/{}") {{ name }}', 'collection(name: "collections/{}") {{ name }}',
     'workflow(name: "workflows/{}") {{ name }}'],
)  # fmt: skip
async def test_another_tenants_object_is_absent_exactly_like_a_missing_one(
    gateway: Gateway, keys: Keys, field: str
) -> None:
    owned = {"app": "helpdesk", "collection": "handbook", "workflow": "answer"}
    existing = owned[field.split("(")[0]]
    theirs = await query(gateway.http_port, "{ " + field.format(existing) + " }", key=keys.beta_dev)
    missing = await query(
        gateway.http_port, "{ " + field.format("zz-missing") + " }", key=keys.beta_dev
    )
    assert codes(theirs) == codes(missing) == ["NOT_FOUND"]
    assert theirs["errors"][0]["message"].replace(existing, "X") == missing["errors"][0][
        "message"
    ].replace("zz-missing", "X")


async def test_a_developer_cannot_list_another_tenants_keys(gateway: Gateway, keys: Keys) -> None:
    reply = await query(gateway.http_port, '{ apiKeys(tenant: "tenants/beta") { name } }',
                        key=keys.acme_dev)  # fmt: skip
    assert codes(reply) == ["PERMISSION_DENIED"]
