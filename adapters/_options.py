"""Deployment `options` -> a provider's validated settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

S = TypeVar("S", bound=BaseModel)


def parse_options(kind: type[S], options: Mapping[str, Any] | None, vendor: str) -> S:
    """Validated settings; ValueError names each bad option on one line."""
    try:
        return kind.model_validate(dict(options or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"options.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"{vendor}: {problems}") from None
