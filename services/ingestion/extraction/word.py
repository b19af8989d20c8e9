"""DOCX via python-docx: paragraphs and tables in order, headings as Markdown lines."""

from __future__ import annotations

import io
import re
import zipfile
import zlib

import docx
from docx.document import Document as DocxDocument
from docx.table import Table
from docx.text.paragraph import Paragraph

from ingestion.documents import ExtractedText
from ingestion.errors import too_large, unreadable
from ingestion.extraction.limits import ExtractionLimits, cap_text

_READ_BYTES = 1 << 20
_HEADING_STYLE = re.compile(r"^(?:heading|überschrift|titre|título)\s*(\d)$", re.IGNORECASE)


def read_docx(blob: bytes, limits: ExtractionLimits) -> ExtractedText:
    """Body paragraphs and tables; headers, footers and comments are left out."""
    check_zip_bounds(blob, limits)
    try:
        document = docx.Document(io.BytesIO(blob))
    except MemoryError:
        raise  # the memory cap, not damage: the caller says so
    except Exception:  # python-docx/lxml/zipfile raise many kinds on damaged files
        raise unreadable("The Word document (.docx) is damaged and cannot be read") from None
    levels = _heading_levels(document)
    blocks: list[str] = []
    size = 0
    for item in document.iter_inner_content():
        block = _paragraph_text(item, levels) if isinstance(item, Paragraph) else _table_text(item)
        if not block:
            continue
        blocks.append(block)
        size += len(block) + 2
        if size > limits.max_chars:
            break  # cap_text cuts and reports
    text = "\n\n".join(blocks)
    if not text.strip():
        raise unreadable("The Word document has no text")
    warnings: list[str] = []
    text = cap_text(text, limits, warnings)
    title = (document.core_properties.title or "").strip()
    return ExtractedText(
        text=text,
        kind="docx",
        structured=True,
        metadata={"title": title} if title else {},
        warnings=warnings,
    )


def check_zip_bounds(blob: bytes, limits: ExtractionLimits) -> None:
    """Refuse a ZIP whose directory declares too much data (a zip bomb) before inflating it.

    zipfile never inflates a member past the size its directory declares, so checking
    the declared sizes bounds the memory that opening the document can take.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise unreadable("The Word document (.docx) is damaged and cannot be read") from None
    if len(members) > limits.max_docx_entries:
        raise too_large(f"The Word document has too many parts ({len(members):,})")
    declared = sum(member.file_size for member in members)
    if declared > limits.max_docx_uncompressed_bytes:
        raise too_large(
            f"The Word document would unpack to {declared / 2**20:,.0f} MiB, over the "
            f"{limits.max_docx_uncompressed_bytes / 2**20:,.0f} MiB limit"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            _check_markup(archive, members, limits)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error):
        raise unreadable("The Word document (.docx) is damaged and cannot be read") from None


def _check_markup(
    archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], limits: ExtractionLimits
) -> None:
    """Count the markup of every XML part as it inflates, before anything parses it.

    Each '<' opens at most one element, so the count bounds the tree python-docx would
    build; it stops at the limit, so a hostile part costs a bounded read, not a parse.
    A part is XML when it starts like XML (whatever its name: the content types decide
    what python-docx parses). Document type declarations are refused outright: Word
    never writes them, and they are where entity tricks live.
    """
    tags = 0
    for member in members:
        with archive.open(member) as part:
            tail = b""
            first = True
            while piece := part.read(_READ_BYTES):
                if first and not piece.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
                    break  # an image or other binary part: never parsed as XML
                first = False
                if b"<!DOCTYPE" in tail + piece or b"<!ENTITY" in tail + piece:
                    raise unreadable("The Word document declares a DTD; it was not read")
                tags += piece.count(b"<")
                if tags > limits.max_docx_xml_tags:
                    raise too_large(
                        f"The Word document has more than {limits.max_docx_xml_tags:,} XML "
                        "tags; it was not read"
                    )
                tail = piece[-16:]


def _heading_levels(document: DocxDocument) -> dict[str, int]:
    """Heading level by style id, read once: `Paragraph.style` rescans all styles per call."""
    levels: dict[str, int] = {}
    try:
        styles = list(document.styles)
    except Exception:  # a damaged styles part costs the headings, not the text
        return levels
    for style in styles:
        name = style.name or ""
        match = _HEADING_STYLE.match(name)
        if name == "Title":
            levels[style.style_id] = 1
        elif match:
            levels[style.style_id] = min(int(match.group(1)), 6)
    return levels


def _paragraph_text(paragraph: Paragraph, levels: dict[str, int]) -> str:
    text = paragraph.text.strip()
    if not text:
        return ""
    level = levels.get(paragraph._p.style or "", 0)
    return f"{'#' * level} {text}" if level else text


def _table_text(table: Table) -> str:
    lines: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            # Merged cells repeat the same cell object once per grid column.
            if cell._tc is previous:
                continue
            previous = cell._tc
            value = " ".join(cell.text.split())
            cells.append(value)
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)
