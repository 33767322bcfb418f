"""PDF text per page (pypdfium2), page numbers kept."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pypdfium2 as pdfium

from indexer.errors import UnreadableFile
from indexer.section import Section

# PDFium is not thread-safe, and parsing runs in worker threads.
_PDFIUM = threading.Lock()


def _page_text(document: pdfium.PdfDocument, index: int) -> str:
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            text = str(textpage.get_text_range())
        finally:
            textpage.close()
    finally:
        page.close()
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_pdf(path: Path, filename: str) -> Iterator[Section]:
    """One section per page with text; pages are read one at a time."""
    with _PDFIUM:
        try:
            document = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as exc:
            raise UnreadableFile(filename, f"is not a readable PDF ({exc})") from exc
        try:
            pages = len(document)
        except pdfium.PdfiumError as exc:
            document.close()
            raise UnreadableFile(filename, f"is not a readable PDF ({exc})") from exc
    try:
        for index in range(pages):
            with _PDFIUM:
                try:
                    text = _page_text(document, index)
                except pdfium.PdfiumError as exc:
                    raise UnreadableFile(filename, f"page {index + 1} is corrupt ({exc})") from exc
            yield Section(text, page=index + 1)
    finally:
        with _PDFIUM:
            document.close()
