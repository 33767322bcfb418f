"""Plain text with its encoding detected (charset-normalizer)."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path

from charset_normalizer import from_bytes

from indexer.errors import UnreadableFile
from indexer.section import Section

_SAMPLE_BYTES = 1 << 20
# Python codec names, most likely first.
_PREFERRED = (
    "utf_8", "utf_16", "utf_32", "cp1252", "iso8859_15", "cp1250", "cp1251", "koi8_r",
    "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "gb18030", "big5", "shift_jis",
    "euc_jp", "euc_kr",
)  # fmt: skip


def detect_encoding(path: Path, filename: str) -> str:
    """The encoding of a text file, judged from its first megabyte: UTF-8 when
    it decodes as such, else charset-normalizer's least chaotic reading among
    common encodings, ties going to the more common one (it cannot tell cp1252
    from cp1257 on short Western text, and cp1252 is far more likely)."""
    with path.open("rb") as file:
        sample = file.read(_SAMPLE_BYTES)
    if not sample:
        raise UnreadableFile(filename, "is empty")
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(sample) < _SAMPLE_BYTES)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    matches = list(from_bytes(sample, cp_isolation=list(_PREFERRED), threshold=0.5))
    if not matches:
        raise UnreadableFile(filename, "is not text in any encoding we can detect")
    least = min(m.chaos for m in matches)
    plausible = [m for m in matches if m.chaos <= least + 0.1]
    return min(plausible, key=lambda m: _PREFERRED.index(m.encoding)).encoding


def read_text(path: Path, filename: str) -> str:
    encoding = detect_encoding(path, filename)
    try:
        text = path.read_text(encoding=encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise UnreadableFile(filename, f"cannot be decoded as {encoding}: {exc}") from exc
    if "\x00" in text:
        raise UnreadableFile(filename, "looks binary (NUL characters), not text")
    return text


def paragraphs_section(text: str) -> Section:
    return Section(text.replace("\r\n", "\n").replace("\r", "\n"))


def parse_text(path: Path, filename: str) -> Iterator[Section]:
    yield paragraphs_section(read_text(path, filename))
