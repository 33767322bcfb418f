"""CSV (or TSV): each row becomes a section of `header: value` lines, streamed."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

from indexer.errors import UnreadableFile
from indexer.parse_text import detect_encoding
from indexer.section import Section

_SNIFF_CHARS = 16384
# One huge quoted field must not be able to eat memory without bound.
csv.field_size_limit(min(sys.maxsize, 16 * 1024 * 1024))


def _dialect(sample: str, filename: str) -> type[csv.Dialect] | str:
    if filename.lower().endswith(".tsv"):
        return "excel-tab"
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return "excel"


def parse_csv(path: Path, filename: str) -> Iterator[Section]:
    """The first row is the header; each later row is one section with `row` (1-based)."""
    encoding = detect_encoding(path, filename)
    try:
        with path.open(encoding=encoding, newline="") as file:
            dialect = _dialect(file.read(_SNIFF_CHARS), filename)
            file.seek(0)
            reader = csv.reader(file, dialect)
            header = [h.strip() for h in next(reader, [])]
            if not any(header):
                raise UnreadableFile(filename, "has no header row")
            for number, row in enumerate(reader, start=1):
                if len(row) > len(header):
                    raise UnreadableFile(
                        filename,
                        f"line {reader.line_num}: {len(row)} fields, the header has {len(header)}",
                    )
                pairs = zip(header, row, strict=False)
                lines = [f"{h}: {v.strip()}" for h, v in pairs if v.strip()]
                if lines:
                    yield Section("\n".join(lines), extra={"row": number})
    except csv.Error as exc:
        raise UnreadableFile(filename, f"is not valid CSV ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise UnreadableFile(filename, f"cannot be decoded as {encoding}: {exc}") from exc
