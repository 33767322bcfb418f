"""The unit every parser yields. A leaf module: `indexer.parse` picks the
parsers (parse_*) and they all produce `Section`s, so the type lives below both."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Section:
    """A run of text that no chunk crosses: a PDF page, a Markdown section, a CSV row."""

    text: str
    page: int = 0  # 1-based; 0 where the format has no pages
    heading: str = ""  # the heading path, "Guide > Install > Linux"
    extra: Mapping[str, Any] = field(
        default_factory=lambda: _EMPTY
    )  # parser facts, e.g. {"row": 7}


Parser = Callable[[Path, str], Iterator[Section]]
