"""Files to text sections: one parser per format, picked by MIME type or extension.

Every parser yields `Section`s lazily (a large CSV is streamed row by row) and
raises `UnreadableFile` naming the file for anything corrupt or unsupported;
the caller commits nothing of a document until its whole file parsed.
"""

from __future__ import annotations

import importlib
import mimetypes
from collections.abc import Iterator
from pathlib import Path

from indexer.errors import UnreadableFile
from indexer.section import Parser, Section

_BY_EXTENSION = {
    ".pdf": "application/pdf",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".txt": "text/plain",
    ".text": "text/plain",
    ".log": "text/plain",
}


def detect_type(filename: str, mime_type: str = "") -> str:
    """The MIME type to parse `filename` as: `mime_type` when given, else by extension."""
    if mime_type:
        return mime_type.split(";")[0].strip().lower()
    suffix = Path(filename).suffix.lower()
    return _BY_EXTENSION.get(suffix) or mimetypes.guess_type(filename)[0] or ""


# MIME type -> (module in indexer, parser function): imported on first use, so
# that a text-only deployment never loads pdfium or bs4.
_PARSERS: dict[str, tuple[str, str]] = {
    "application/pdf": ("parse_pdf", "parse_pdf"),
    "text/csv": ("parse_csv", "parse_csv"),
    "text/tab-separated-values": ("parse_csv", "parse_csv"),
    "text/markdown": ("parse_markdown", "parse_markdown"),
    "text/x-markdown": ("parse_markdown", "parse_markdown"),
    "text/html": ("parse_html", "parse_html"),
    "application/xhtml+xml": ("parse_html", "parse_html"),
    "text/plain": ("parse_text", "parse_text"),
}


def supported(filename: str) -> bool:
    """Whether a file of this name is one the parsers read (by its extension)."""
    return detect_type(filename) in _PARSERS


def _parser(kind: str) -> Parser | None:
    if (where := _PARSERS.get(kind)) is None:
        return None
    module, function = where
    parser: Parser = getattr(importlib.import_module(f"indexer.{module}"), function)
    return parser


def parse_file(path: Path, filename: str, mime_type: str = "") -> Iterator[Section]:
    """Sections of the file at `path`, which the client called `filename`.

    Raises `UnreadableFile` (naming `filename`) for an unsupported type, a
    corrupt file or one without any text, possibly after yielding sections.
    """
    kind = detect_type(filename, mime_type)
    parser = _parser(kind)
    if parser is None:
        raise UnreadableFile(filename, f"unsupported file type {kind or 'unknown'!r}")
    empty = True
    for section in parser(path, filename):
        if section.text.strip():
            empty = False
            yield section
    if empty:
        raise UnreadableFile(filename, "contains no text")


def parse_text_document(text: str, filename: str = "", mime_type: str = "") -> Iterator[Section]:
    """Sections of a document sent as text: Markdown when the type says so, else plain."""
    kind = detect_type(filename, mime_type) if (filename or mime_type) else "text/plain"
    if kind in ("text/markdown", "text/x-markdown"):
        from indexer.parse_markdown import markdown_sections

        yield from markdown_sections(text)
    elif kind in ("text/plain", ""):
        from indexer.parse_text import paragraphs_section

        if text.strip():
            yield paragraphs_section(text)
    else:
        reason = f"text documents are plain or Markdown, not {kind!r}"
        raise UnreadableFile(filename or "text", reason)
