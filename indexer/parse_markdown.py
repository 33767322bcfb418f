"""Markdown (markdown-it-py): one section per heading, with the heading path kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from markdown_it import MarkdownIt

from indexer.parse_text import read_text
from indexer.section import Section

_MARKDOWN = MarkdownIt("commonmark").enable("table")


def markdown_sections(text: str) -> Iterator[Section]:
    """The source of each block under its heading path; headings themselves are
    kept as the first line of their section so that they are searchable."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    path: list[str] = []
    blocks: list[str] = []
    tokens = _MARKDOWN.parse("\n".join(lines))
    for index, token in enumerate(tokens):
        if token.level != 0 or token.map is None:
            continue
        start, end = token.map
        if token.type == "heading_open":
            if blocks:
                yield _section(blocks, path)
                blocks = []
            level = int(token.tag[1:])
            title = tokens[index + 1].content.strip()
            path = [*path[: level - 1], title]
        blocks.append("\n".join(lines[start:end]).strip())
    if blocks:
        yield _section(blocks, path)


def _section(blocks: list[str], path: list[str]) -> Section:
    heading = " > ".join(path)
    return Section("\n\n".join(b for b in blocks if b), heading=heading)


def parse_markdown(path: Path, filename: str) -> Iterator[Section]:
    yield from markdown_sections(read_text(path, filename))
