"""The role each RPC needs. A method missing here needs ADMIN (fail closed);
a test checks that every RPC of every service is listed."""

from __future__ import annotations

from gateway.identity import Role

_U, _D, _A = Role.USER, Role.DEVELOPER, Role.ADMIN
_BY_SERVICE: dict[str, dict[str, Role]] = {
    "infergate.v1.Router": {
        "Generate": _U, "GenerateStream": _U, "Embed": _U, "Rerank": _U, "ListModels": _U,
        # Operational detail (deployments, upstream bodies, last errors).
        "GetModelHealth": _D, "Route": _D,
    },
    "infergate.v1.Dataset": {
        "GetCollection": _U, "ListCollections": _U, "Search": _U, "ListChunks": _U,
        "CreateCollection": _D, "DeleteCollection": _D, "UpsertDocuments": _D,
        "IngestFile": _D, "DeleteDocuments": _D,
        "ListDocuments": _U,
    },
    "infergate.v1.App": {
        "GetApp": _U, "ListApps": _U, "Chat": _U, "Completion": _U,
        "CreateApp": _D, "UpdateApp": _D, "DeleteApp": _D, "QueryUsage": _D,
        "CreateTenant": _A, "ListTenants": _A, "CreateApiKey": _A, "ListApiKeys": _A,
        "RevokeApiKey": _A, "ListAuditEvents": _A,
        # Spend: admins set budgets; developers read their tenant's, and the prices.
        "SetBudget": _A, "DeleteBudget": _A, "ListBudgets": _D, "ListPrices": _D,
        "SetPrice": _A, "DeletePrice": _A,
        # Users run workflows; developers write them, read their runs and keep secrets.
        "GetWorkflow": _U, "ListWorkflows": _U, "ListNodeTypes": _U, "RunWorkflow": _U,
        "RunWorkflowUnary": _U, "SubmitWorkflowRun": _U,
        "CreateWorkflow": _D, "UpdateWorkflow": _D, "PublishWorkflow": _D, "DeleteWorkflow": _D,
        "ValidateWorkflow": _D, "ListWorkflowVersions": _D, "ListWorkflowRuns": _D,
        "GetWorkflowRun": _D, "SetSecret": _D, "ListSecrets": _D, "DeleteSecret": _D,
        "GetCaller": _U,
    },
    "infergate.v1.Tasks": {
        "Submit": _U, "Get": _U, "List": _U, "Cancel": _U, "Watch": _U,
        "ListDeadLetters": _D, "Requeue": _D,
    },
}  # fmt: skip

REQUIRED: dict[str, Role] = {
    f"/{service}/{method}": role
    for service, methods in _BY_SERVICE.items()
    for method, role in methods.items()
}

# Answered without a key: load balancers and grpcurl must reach these.
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def required(method: str) -> Role:
    return REQUIRED.get(method, Role.ADMIN)


def parse_role(name: str, field: str = "role") -> Role:
    """'admin', 'developer' or 'user' (any case)."""
    from gateway.errors import InvalidArgument

    try:
        return Role[name.strip().upper()]
    except KeyError:
        raise InvalidArgument(field, f"must be admin, developer or user, got {name!r}") from None
