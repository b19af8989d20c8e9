"""Bounds on how much work and memory one file may cost."""

from __future__ import annotations

import msgspec


class ExtractionLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_chars: int = 5_000_000
    max_pdf_pages: int = 2_000
    # DOCX is a ZIP: its directory's declared sizes bound what decompression may produce.
    max_docx_uncompressed_bytes: int = 200 * 1024 * 1024
    max_docx_entries: int = 5_000
    # ... but a small archive can declare a large, highly repetitive XML part: millions of
    # `<w:p/>` parse into a tree of ~230 bytes per element. Markup tags ('<') over every XML
    # part are counted while the parts stream through decompression, before any parse; a
    # 300-page report has a few hundred thousand.
    max_docx_xml_tags: int = 1_000_000
    # JSON larger than this is read as text rather than decoded into objects first
    max_json_bytes: int = 16 * 1024 * 1024


def cap_text(text: str, limits: ExtractionLimits, warnings: list[str]) -> str:
    """Cut text at `max_chars` (on a line or word boundary when one is near) and say so."""
    if len(text) <= limits.max_chars:
        return text
    cut = limits.max_chars
    window = text[max(0, cut - 1000) : cut]
    for separator in ("\n", " "):
        at = window.rfind(separator)
        if at != -1:
            cut = cut - len(window) + at
            break
    warnings.append(
        f"The text was cut at {cut:,} characters (limit {limits.max_chars:,}); "
        "the rest is not indexed"
    )
    return text[:cut]
