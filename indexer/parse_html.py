"""HTML's main text (Beautiful Soup): no scripts, styles or page furniture."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, Tag

from indexer.parse_text import read_text
from indexer.section import Section

_DROP = (
    "script", "style", "noscript", "template", "svg", "iframe", "form",
    "nav", "header", "footer", "aside", "head",
)  # fmt: skip
_BLOCKS = (
    "p", "div", "section", "article", "main", "li", "ul", "ol", "pre", "blockquote",
    "table", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "br", "hr", "dd", "dt",
)  # fmt: skip
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")


def html_text(markup: str) -> tuple[str, str]:
    """(title, main text with one blank line between blocks)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(markup, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(_DROP):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    assert isinstance(root, Tag | BeautifulSoup)
    for tag in root.find_all(_BLOCKS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    raw = root.get_text()
    paragraphs = (_SPACES.sub(" ", " ".join(p.split("\n"))).strip() for p in raw.split("\n\n"))
    return title, "\n\n".join(p for p in paragraphs if p)


def parse_html(path: Path, filename: str) -> Iterator[Section]:
    title, text = html_text(read_text(path, filename))
    yield Section(text, heading=title)
