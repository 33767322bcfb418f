"""The router's one exception tree. gateway/status.py maps it to gRPC codes once."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum


class ErrorKind(StrEnum):
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    UPSTREAM_5XX = "upstream_5xx"
    INTERRUPTED = "interrupted"  # the upstream stream broke after it started
    CANCELLED = "cancelled"
    # The deployment's backend cannot do this kind of call at all (rerank on a
    # chat API): another deployment may, the same one never will.
    UNIMPLEMENTED = "unimplemented"


class RouterError(Exception):
    """Base of every error the router raises."""


class InvalidRequest(RouterError):
    """The request itself is wrong; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ModelNotFound(RouterError):
    def __init__(self, model: str) -> None:
        super().__init__(f"model {model!r} is not configured")
        self.model = model


class ProviderError(RouterError):
    """A failure of one upstream call, already translated from the vendor's."""

    def __init__(self, kind: ErrorKind, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether another attempt (here or on another deployment) may succeed."""
        return self.kind not in (ErrorKind.BAD_REQUEST, ErrorKind.CANCELLED)


class AllProvidersFailed(RouterError):
    """No deployment served the call: `attempts` holds each try's error and
    `skipped` each deployment not tried, with the reason."""

    def __init__(
        self,
        model: str,
        attempts: Sequence[tuple[str, ProviderError]],
        skipped: Sequence[tuple[str, str]] = (),
    ) -> None:
        parts = [f"{name}: {err.kind}: {err}" for name, err in attempts]
        parts += [f"{name} skipped: {reason}" for name, reason in skipped]
        head = (
            f"all deployments of {model!r} failed"
            if attempts
            else f"no deployment of {model!r} is available"
        )
        super().__init__(f"{head} ({'; '.join(parts)})")
        self.model = model
        self.attempts = list(attempts)
        self.skipped = list(skipped)

    @property
    def kind(self) -> ErrorKind:
        """The attempts' common kind, or UNAVAILABLE when they differ or none ran.
        Deployments that cannot do the call at all (UNIMPLEMENTED) count only
        when no other one was tried: a reranker's 400 stays a 400 beside them."""
        kinds = {err.kind for _, err in self.attempts}
        if len(kinds) > 1:
            kinds.discard(ErrorKind.UNIMPLEMENTED)
        return kinds.pop() if len(kinds) == 1 else ErrorKind.UNAVAILABLE

    @property
    def retry_after(self) -> float | None:
        """The soonest an upstream said to come back, if any did."""
        waits = [err.retry_after for _, err in self.attempts if err.retry_after]
        return min(waits) if waits else None
