"""Parsers over real files written here: PDF (fpdf2), CSV, Markdown, HTML, text."""

from __future__ import annotations

from pathlib import Path

import pytest
from fpdf import FPDF

from indexer.errors import UnreadableFile
from indexer.parse import detect_type, parse_file, parse_text_document
from indexer.section import Section


def write_pdf(path: Path, pages: list[str]) -> Path:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    pdf.output(str(path))
    return path


def sections(path: Path, name: str | None = None, mime: str = "") -> list[Section]:
    return list(parse_file(path, name or path.name, mime))


def test_pdf_keeps_page_numbers(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "report.pdf", ["Alpha page about cats.", "", "Gamma page on dogs."])
    found = sections(path)
    assert [(s.page, s.text.strip()) for s in found] == [
        (1, "Alpha page about cats."),
        (3, "Gamma page on dogs."),
    ]


def test_corrupt_pdf_names_the_file(tmp_path: Path) -> None:
    good = write_pdf(tmp_path / "good.pdf", ["text"]).read_bytes()
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(good[: len(good) // 3])
    with pytest.raises(UnreadableFile, match=r"broken\.pdf"):
        sections(bad)
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(b"%PDF-1.4 this is not a pdf at all")
    with pytest.raises(UnreadableFile, match=r"garbage\.pdf: is not a readable PDF"):
        sections(garbage)


def test_csv_rows_carry_their_header(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text('name,city,note\nAda,London,"likes, commas"\nLin,,quiet\n', encoding="utf-8")
    found = sections(path)
    assert [s.text for s in found] == [
        "name: Ada\ncity: London\nnote: likes, commas",
        "name: Lin\nnote: quiet",
    ]
    assert [s.extra["row"] for s in found] == [1, 2]


def test_csv_semicolons_and_latin1(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    rows = "".join(f"café crème n°{i};{i},50;très élevé, à côté\n" for i in range(20))
    path.write_bytes(f"produit;prix;remarque\n{rows}".encode("latin-1"))
    found = sections(path)
    assert found[0].text == "produit: café crème n°0\nprix: 0,50\nremarque: très élevé, à côté"


def test_csv_with_extra_fields_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n1,2,3,4\n")
    with pytest.raises(UnreadableFile, match=r"bad\.csv: line 3: 4 fields, the header has 2"):
        sections(path)


def test_markdown_keeps_the_heading_path(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(
        "Preface line.\n\n# Guide\n\nIntro.\n\n## Install\n\nRun `pip install`.\n\n"
        "```sh\n# not a heading\nmake run\n```\n\n### Linux\n\nUse apt.\n\n## Usage\n\nCall it.\n"
    )
    found = [(s.heading, s.text) for s in sections(path)]
    assert found == [
        ("", "Preface line."),
        ("Guide", "# Guide\n\nIntro."),
        (
            "Guide > Install",
            "## Install\n\nRun `pip install`.\n\n```sh\n# not a heading\nmake run\n```",
        ),
        ("Guide > Install > Linux", "### Linux\n\nUse apt."),
        ("Guide > Usage", "## Usage\n\nCall it."),
    ]


def test_html_main_text_without_scripts_or_chrome(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Cats</title><style>p {color: red}</style></head><body>"
        "<nav>Home | About</nav><script>var secret = 1;</script>"
        "<main><h1>All about cats</h1><p>Cats <b>chase</b> mice.</p><ul><li>one</li>"
        "<li>two</li></ul></main><footer>copyright</footer></body></html>"
    )
    (found,) = sections(path)
    assert found.heading == "Cats"
    assert found.text == "All about cats\n\nCats chase mice.\n\none\n\ntwo"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "cp1252"])
def test_plain_text_encoding_is_detected(tmp_path: Path, encoding: str) -> None:
    text = "Naïve café owners déjà vu — résumé of the façade, again and again.\n" * 3
    path = tmp_path / "notes.txt"
    path.write_bytes(text.encode(encoding))
    (found,) = sections(path)
    assert found.text == text


def test_unsupported_empty_and_binary_files_are_refused(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(UnreadableFile, match=r"photo\.png: unsupported file type 'image/png'"):
        sections(image)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableFile, match=r"empty\.txt: is empty"):
        sections(empty)
    blank = tmp_path / "blank.md"
    blank.write_text("\n\n   \n")
    with pytest.raises(UnreadableFile, match=r"blank\.md: contains no text"):
        sections(blank)
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02\x00" * 100)
    with pytest.raises(UnreadableFile, match=r"blob\.txt"):
        sections(binary)


def test_type_detection_prefers_the_given_mime_type() -> None:
    assert detect_type("x.bin", "text/markdown; charset=utf-8") == "text/markdown"
    assert detect_type("Report.PDF") == "application/pdf"
    assert detect_type("data.tsv") == "text/tab-separated-values"
    assert [s.heading for s in parse_text_document("# A\n\nb", mime_type="text/markdown")] == ["A"]
    with pytest.raises(UnreadableFile, match="plain or Markdown"):
        list(parse_text_document("<p>x</p>", mime_type="text/html"))
