"""The App layer's one exception tree; gateway/errors.py maps it to gRPC codes."""

from __future__ import annotations


class AppError(Exception):
    """Base of every error the App layer raises."""


class NotFound(AppError):
    """No such object for this caller. Another tenant's object answers the
    same, so that its existence does not leak."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class AlreadyExists(AppError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} already exists")


class InvalidArgument(AppError):
    """Bad input; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Unauthenticated(AppError):
    """No key, or a key that is unknown or revoked (never echoed back)."""


class PermissionDenied(AppError):
    """A known key whose role is below what the RPC needs."""


class QuotaExceeded(AppError):
    """A request or token budget is spent; `retry_after` seconds until it refills."""

    def __init__(self, what: str, retry_after: float) -> None:
        super().__init__(f"{what} exceeded; retry in {retry_after:.2f}s")
        self.retry_after = retry_after


class FailedPrecondition(AppError):
    """The gateway is not set up for this call (e.g. an app retrieves from
    datasets while the Dataset layer is disabled); the message says what to change."""
