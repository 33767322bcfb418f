"""The edge's exception tree, wire-free: one class per kind of failure that a
caller must tell apart. The App layer raises these directly; the task queue's
tree (gateway/tasks/errors.py) derives from them. gateway/status.py maps each
kind to its gRPC code once, so no service package names a status itself.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway's own packages raise."""


class NotFound(GatewayError):
    """No such object for this caller. Another tenant's object answers the
    same, so that its existence does not leak."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class AlreadyExists(GatewayError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} already exists")


class InvalidArgument(GatewayError):
    """Bad input; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Unauthenticated(GatewayError):
    """No key, or a key that is unknown or revoked (never echoed back)."""


class PermissionDenied(GatewayError):
    """A known key whose role is below what the RPC needs."""


class QuotaExceeded(GatewayError):
    """A request or token budget is spent; `retry_after` seconds until it refills."""

    def __init__(self, what: str, retry_after: float) -> None:
        super().__init__(f"{what} exceeded; retry in {retry_after:.2f}s")
        self.retry_after = retry_after


class FailedPrecondition(GatewayError):
    """The gateway is not set up for this call (e.g. an app retrieves from
    datasets while the Dataset layer is disabled); the message says what to change."""


class DeadlineExceeded(GatewayError):
    """The caller's deadline passed before the work finished (a workflow run, say)."""


class Unavailable(GatewayError):
    """A backing service (the task queue's store, say) cannot be reached;
    the call may succeed if retried."""
