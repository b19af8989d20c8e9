"""Extraction: real files of every supported type, and clear refusals for the rest."""

from __future__ import annotations

import codecs
import json

import pytest

from ingestion.errors import ExtractionError
from ingestion.extraction import ExtractionLimits, extract_text
from tests.ingestion.files import (
    docx_bytes,
    encrypted_pdf_bytes,
    pdf_bytes,
    with_declared_size,
    zip_bytes,
)

LIMITS = ExtractionLimits()


def refusal(blob: bytes, filename: str, content_type: str = "", **limits: int) -> ExtractionError:
    with pytest.raises(ExtractionError) as caught:
        extract_text(blob, filename, content_type, ExtractionLimits(**limits))
    return caught.value


def test_a_pdf_gives_its_text_page_by_page_with_page_numbers() -> None:
    blob = pdf_bytes([["Tides follow the moon.", "Twice a day."], ["Spring tides are (higher)."]])
    extracted = extract_text(blob, "tides.pdf", "application/pdf", LIMITS)
    assert extracted.kind == "pdf"
    assert extracted.text == "Tides follow the moon.\nTwice a day.\n\nSpring tides are (higher)."
    assert extracted.metadata["pages"] == 2
    pages = [(extracted.text[s.start : s.end], s.metadata["page"]) for s in extracted.spans]
    assert pages == [("Tides follow the moon.\nTwice a day.", 0), ("Spring tides are (higher).", 1)]


def test_a_pdf_is_recognised_by_its_content_whatever_it_is_called() -> None:
    extracted = extract_text(pdf_bytes([["Hidden PDF"]]), "notes.txt", "text/plain", LIMITS)
    assert (extracted.kind, extracted.text) == ("pdf", "Hidden PDF")


def test_a_pdf_only_as_many_pages_as_the_limit_are_read_and_that_is_said() -> None:
    blob = pdf_bytes([[f"Page {n}"] for n in range(1, 6)])
    extracted = extract_text(blob, "long.pdf", "", ExtractionLimits(max_pdf_pages=2))
    assert extracted.text == "Page 1\n\nPage 2"
    assert extracted.warnings == ["Only the first 2 of 5 pages were read"]


def test_a_file_called_pdf_that_is_not_a_pdf_is_refused_as_such() -> None:
    error = refusal(b"Just some words, no PDF here.", "report.pdf", "application/pdf")
    assert error.code == "invalid"
    assert error.reason == "The file is called a PDF but its content is not a PDF"


def test_a_damaged_pdf_is_refused_clearly() -> None:
    error = refusal(b"%PDF-1.7\n" + b"\x00garbage" * 50, "broken.pdf")
    assert error.code == "invalid"
    assert "PDF" in error.reason


def test_a_pdf_without_text_is_refused_as_probably_scanned() -> None:
    error = refusal(pdf_bytes([[], []]), "scan.pdf", "application/pdf")
    assert error.reason == "The PDF has no extractable text (scanned images?)"


def test_a_password_protected_pdf_is_refused_but_an_owner_only_one_is_read() -> None:
    error = refusal(encrypted_pdf_bytes([["Secret"]], user_password="hunter2"), "locked.pdf")
    assert error.reason == "The PDF is password-protected; upload an unprotected copy"
    opened = extract_text(
        encrypted_pdf_bytes([["Readable"]], user_password=""), "x.pdf", "", LIMITS
    )
    assert opened.text == "Readable"


def test_a_docx_gives_headings_paragraphs_and_tables_in_order() -> None:
    extracted = extract_text(docx_bytes(), "guide.docx", "", LIMITS)
    assert extracted.kind == "docx"
    assert extracted.structured
    assert extracted.metadata == {"title": "Field guide"}
    assert extracted.text == (
        "# Field guide\n\nBirds of the northern coast.\n\n# Gulls\n\n"
        "Herring gulls nest on cliffs.\n\n"
        "Bird | Wingspan | Habitat\nHerring gull | 1.4 m | Coast\nKittiwake | Open sea\n\n"
        "## Terns\n\nArctic terns migrate furthest."
    )


def test_a_zip_bomb_docx_is_refused_before_it_is_inflated() -> None:
    bomb = with_declared_size(docx_bytes(), "word/document.xml", 4_000_000_000)
    error = refusal(bomb, "bomb.docx")
    assert error.code == "too_large"
    assert "would unpack to" in error.reason


def test_a_docx_over_the_configured_unpacked_size_is_refused() -> None:
    error = refusal(docx_bytes(), "guide.docx", max_docx_uncompressed_bytes=10_000)
    assert error.code == "too_large"


def test_other_office_zips_and_plain_zips_are_unsupported_with_a_reason() -> None:
    xlsx = zip_bytes({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"})
    assert refusal(xlsx, "sheet.xlsx").reason == "Excel spreadsheets (.xlsx) are not supported yet"
    plain = zip_bytes({"a.txt": b"hello"})
    assert refusal(plain, "files.zip").code == "unsupported"
    assert refusal(plain, "fake.docx").reason == (
        "The file is called a Word document (.docx) but is not one"
    )


def test_html_gives_visible_text_only_with_headings_as_markdown() -> None:
    page = b"""<!DOCTYPE html><html><head><title>Tide  tables</title>
    <style>body { color: red }</style><script>var secret = "do not index";</script></head>
    <body><h1>Tides</h1><p>High   water at <b>06:12</b> &amp; 18:40.</p>
    <noscript>Enable JavaScript</noscript>
    <ul><li>Neap</li><li>Spring</li></ul>
    <table><tr><th>Port</th><th>Range</th></tr><tr><td>Brest</td><td>7 m</td></tr></table>
    <script type="module">import("x")</script></body></html>"""
    extracted = extract_text(page, "page.html", "text/html; charset=utf-8", LIMITS)
    assert extracted.kind == "html"
    assert extracted.metadata["title"] == "Tide tables"
    assert extracted.text == (
        "# Tides\n\nHigh water at 06:12 & 18:40.\n\n- Neap\n- Spring\n\nPort | Range\nBrest | 7 m"
    )
    for hidden in ("secret", "color", "JavaScript", "import"):
        assert hidden not in extracted.text


def test_csv_rows_become_labelled_lines() -> None:
    blob = b"name;born;note\r\nAda Lovelace;1815;first program\r\nAlan Turing;1912;\r\n"
    extracted = extract_text(blob, "people.csv", "text/csv", LIMITS)
    assert extracted.text == (
        "name: Ada Lovelace | born: 1815 | note: first program\nname: Alan Turing | born: 1912"
    )
    assert extracted.metadata["rows"] == 2


def test_json_is_pretty_printed_with_unicode_unescaped() -> None:
    blob = json.dumps({"city": "Zürich", "tags": ["lake", "alps"]}, ensure_ascii=True).encode()
    extracted = extract_text(blob, "data.json", "application/json", LIMITS)
    assert extracted.text == '{\n  "city": "Zürich",\n  "tags": [\n    "lake",\n    "alps"\n  ]\n}'
    assert extracted.warnings == []


def test_invalid_json_is_still_read_as_text_and_that_is_said() -> None:
    extracted = extract_text(b'{"open": [1, 2', "broken.json", "", LIMITS)
    assert extracted.text == '{"open": [1, 2'
    assert extracted.warnings == ["The file is not valid JSON; it was read as plain text"]


@pytest.mark.parametrize(
    ("blob", "encoding"),
    [
        ("Grüße, 世界\r\n".encode(), "utf-8"),
        (codecs.BOM_UTF8 + "Grüße, 世界\r\n".encode(), "utf-8"),
        ("Grüße, 世界\r\n".encode("utf-16"), "utf-16"),
        ("Grüße, 世界\r\n".encode("utf-16-be"), "utf-16-be"),
        (codecs.BOM_UTF16_BE + "Grüße, 世界\r\n".encode("utf-16-be"), "utf-16"),
        ("Grüße, 世界\r\n".encode("utf-32"), "utf-32"),
    ],
)
def test_text_encodings_are_detected(blob: bytes, encoding: str) -> None:
    extracted = extract_text(blob, "greeting.txt", "text/plain", LIMITS)
    assert extracted.text == "Grüße, 世界\n"
    assert extracted.metadata["encoding"] == encoding
    assert extracted.warnings == []


def test_non_utf8_text_falls_back_to_windows_1252_and_says_so() -> None:
    blob = "Café crème, naïve façade — déjà vu".encode("cp1252")
    extracted = extract_text(blob, "notes.txt", "", LIMITS)
    assert extracted.text == "Café crème, naïve façade — déjà vu"
    assert extracted.metadata["encoding"] == "windows-1252"
    assert "not UTF-8" in extracted.warnings[0]


def test_a_declared_charset_is_honoured() -> None:
    extracted = extract_text(
        "Ελληνικά".encode("iso-8859-7"), "a.txt", "text/plain; charset=iso-8859-7", LIMITS
    )
    assert extracted.text == "Ελληνικά"


def test_markdown_is_read_as_structured_text() -> None:
    extracted = extract_text(b"# Title\n\nBody", "readme.md", "application/octet-stream", LIMITS)
    assert (extracted.kind, extracted.structured) == ("markdown", True)


def test_unknown_names_are_sniffed_as_html_or_text() -> None:
    assert extract_text(b"<!doctype html><p>Hi</p>", "page", "", LIMITS).kind == "html"
    assert extract_text(b"plain words", "NOTES", "application/octet-stream", LIMITS).kind == "text"


def test_empty_and_blank_files_are_refused() -> None:
    assert refusal(b"", "empty.txt").reason == "The file is empty"
    assert refusal(b"  \n\t ", "blank.md").reason == "The file is empty"
    assert refusal(codecs.BOM_UTF8 + b"\n", "bom.txt").reason == "The file contains no text"


@pytest.mark.parametrize(
    ("blob", "filename", "reason"),
    [
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "photo.png",
            "PNG images are not supported (no OCR)",
        ),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00",
            "old.doc",
            "Legacy Office files (.doc, .xls, .ppt) are not supported",
        ),
        (
            bytes(range(256)) * 4,
            "blob.bin",
            "The file looks binary, not text, and its type is not supported",
        ),
    ],
)
def test_binary_files_are_unsupported_with_a_reason(
    blob: bytes, filename: str, reason: str
) -> None:
    error = refusal(blob, filename, "application/octet-stream")
    assert (error.code, error.reason) == ("unsupported", reason)


def test_text_over_the_character_limit_is_cut_at_a_word_and_that_is_said() -> None:
    extracted = extract_text(b"word " * 1000, "long.txt", "", ExtractionLimits(max_chars=1002))
    assert extracted.text == ("word " * 200).rstrip()
    assert "cut at" in extracted.warnings[0]
