"""PDF via pypdf: text page by page, each page a span carrying its page number."""

from __future__ import annotations

import io

import pypdf
from pypdf.errors import DependencyError, FileNotDecryptedError

from ingestion.documents import ExtractedText, Metadata, Span
from ingestion.errors import unreadable
from ingestion.extraction.limits import ExtractionLimits, cap_text

_PAGE_SEPARATOR = "\n\n"


def read_pdf(blob: bytes, limits: ExtractionLimits) -> ExtractedText:
    """Text of each page (up to `max_pdf_pages`); spans give Open WebUI's `page` (0-based)."""
    reader = _open(blob)
    pages = _pages(reader)
    warnings: list[str] = []
    if len(pages) > limits.max_pdf_pages:
        warnings.append(
            f"Only the first {limits.max_pdf_pages:,} of {len(pages):,} pages were read"
        )
    labels = _page_labels(reader, len(pages))
    parts: list[str] = []
    spans: list[Span] = []
    offset = 0
    unreadable_pages: list[str] = []
    for number, page in enumerate(pages[: limits.max_pdf_pages]):
        try:
            page_text = (page.extract_text() or "").strip()
        except MemoryError:
            raise
        except Exception:  # pypdf raises many kinds on damaged content streams
            unreadable_pages.append(str(number + 1))
            continue
        if not page_text:
            continue
        if parts:
            offset += len(_PAGE_SEPARATOR)
        parts.append(page_text)
        spans.append(Span(start=offset, end=offset + len(page_text),
                          metadata={"page": number, "page_label": labels[number]}))  # fmt: skip
        offset += len(page_text)
        if offset > limits.max_chars:
            break  # cap_text cuts and reports
    if unreadable_pages:
        warnings.append("Some pages could not be read: " + ", ".join(unreadable_pages[:20]))
    text = _PAGE_SEPARATOR.join(parts)
    if not text.strip():
        raise unreadable("The PDF has no extractable text (scanned images?)")
    text = cap_text(text, limits, warnings)
    metadata: Metadata = {"pages": len(pages)}
    title = _title(reader)
    if title:
        metadata["title"] = title
    return ExtractedText(text=text, kind="pdf", metadata=metadata, spans=spans, warnings=warnings)


def _open(blob: bytes) -> pypdf.PdfReader:
    try:
        reader = pypdf.PdfReader(io.BytesIO(blob), strict=False)
    except MemoryError:
        raise  # the memory cap, not damage: the caller says so
    except Exception:
        raise unreadable("The PDF is damaged and cannot be read") from None
    if reader.is_encrypted:
        # Many PDFs are encrypted only against editing: the empty user password opens them.
        try:
            opened = reader.decrypt("")
        except (DependencyError, NotImplementedError):
            raise unreadable("The PDF is encrypted with a method that cannot be read") from None
        except Exception:
            opened = pypdf.PasswordType.NOT_DECRYPTED
        if opened == pypdf.PasswordType.NOT_DECRYPTED:
            raise unreadable("The PDF is password-protected; upload an unprotected copy")
    return reader


def _pages(reader: pypdf.PdfReader) -> list[pypdf.PageObject]:
    try:
        return list(reader.pages)
    except MemoryError:
        raise
    except FileNotDecryptedError:
        raise unreadable("The PDF is password-protected; upload an unprotected copy") from None
    except Exception:
        raise unreadable("The PDF is damaged: its page tree cannot be read") from None


def _page_labels(reader: pypdf.PdfReader, count: int) -> list[str]:
    try:
        labels = list(reader.page_labels)
    except Exception:
        labels = []
    if len(labels) != count:
        labels = [str(n + 1) for n in range(count)]
    return labels


def _title(reader: pypdf.PdfReader) -> str:
    try:
        info = reader.metadata
        return str(info.title).strip() if info is not None and info.title else ""
    except Exception:  # a damaged info dictionary costs the title, not the text
        return ""
