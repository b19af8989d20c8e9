"""Bytes + filename + content type → text, or an ExtractionError that says why not."""

from __future__ import annotations

from ingestion.documents import ExtractedText
from ingestion.errors import unreadable
from ingestion.extraction.detect import charset_of, detect_kind
from ingestion.extraction.limits import ExtractionLimits
from ingestion.extraction.pdf import read_pdf
from ingestion.extraction.textual import read_csv, read_json, read_text
from ingestion.extraction.webpage import read_html
from ingestion.extraction.word import read_docx

__all__ = ["ExtractionLimits", "extract_text"]


def extract_text(
    blob: bytes, filename: str, content_type: str, limits: ExtractionLimits
) -> ExtractedText:
    """Read a file's text with the reader its content calls for; CPU-bound, run it in a thread."""
    if not blob.strip():
        raise unreadable("The file is empty")
    kind = detect_kind(blob, filename, content_type)
    charset = charset_of(content_type)
    if kind == "pdf":
        extracted = read_pdf(blob, limits)
    elif kind == "docx":
        extracted = read_docx(blob, limits)
    elif kind == "html":
        extracted = read_html(blob, charset, limits)
    elif kind == "csv":
        extracted = read_csv(blob, charset, limits)
    elif kind == "json":
        extracted = read_json(blob, charset, limits)
    else:
        extracted = read_text(blob, kind, charset, limits)
    if not extracted.text.strip():
        raise unreadable("The file contains no text")
    return extracted
