"""The GraphQL data API on the REST port (strawberry): a typed schema over the
same RPCs, run in-process through the gRPC server's interceptors, so auth,
roles, tenant scoping, limits, usage and audit hold exactly as on gRPC.

Every resolver calls an RPC through the shim (gate.py); none reaches a store or
a servicer around the interceptors."""
