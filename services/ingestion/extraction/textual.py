"""Text-based formats: plain text (with encoding detection), Markdown, CSV and JSON."""

from __future__ import annotations

import codecs
import csv
import io
import re

import msgspec

from ingestion.documents import ExtractedText, Kind, Metadata
from ingestion.errors import unsupported
from ingestion.extraction.detect import looks_binary
from ingestion.extraction.limits import ExtractionLimits, cap_text

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: it starts with the UTF-16 LE BOM
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_NEWLINES = re.compile(r"\r\n?")


class DecodedText(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    encoding: str
    warning: str | None = None


def decode_text(blob: bytes, charset: str | None = None) -> DecodedText:
    """Bytes to text: BOMs, then a declared charset, UTF-8, BOM-less UTF-16, then cp1252.

    Raises `ExtractionError` for binary content. A lossy fallback is reported in
    `warning` rather than hidden.
    """
    for bom, codec in _BOMS:
        if blob.startswith(bom):
            return _decode_with(blob, codec, codec.replace("-sig", ""))
    if charset and charset not in ("utf-8", "utf8"):
        try:
            return DecodedText(text=blob.decode(charset), encoding=charset)
        except (LookupError, UnicodeDecodeError):
            pass
    utf16 = _bomless_utf16(blob)
    if utf16 is not None:
        return _decode_with(blob, utf16, utf16)
    if looks_binary(blob[:4096]):
        raise unsupported("The file looks binary, not text, and its type is not supported")
    try:
        return DecodedText(text=blob.decode("utf-8"), encoding="utf-8")
    except UnicodeDecodeError:
        pass
    mostly_utf8 = blob.decode("utf-8", errors="replace")
    if mostly_utf8.count("\ufffd") <= max(2, len(mostly_utf8) // 10_000):
        return DecodedText(
            text=mostly_utf8,
            encoding="utf-8",
            warning="A few bytes were not valid UTF-8 and were replaced",
        )
    try:
        text, encoding = blob.decode("cp1252"), "windows-1252"
    except UnicodeDecodeError:
        text, encoding = blob.decode("latin-1"), "latin-1"
    return DecodedText(
        text=text,
        encoding=encoding,
        warning=f"The text is not UTF-8; it was read as {encoding}, some characters may be wrong",
    )


def _decode_with(blob: bytes, codec: str, label: str) -> DecodedText:
    try:
        return DecodedText(text=blob.decode(codec), encoding=label)
    except UnicodeDecodeError:
        return DecodedText(
            text=blob.decode(codec, errors="replace"),
            encoding=label,
            warning=f"Some bytes were not valid {label} and were replaced",
        )


def _bomless_utf16(blob: bytes) -> str | None:
    """UTF-16 without a BOM shows as NULs in every other byte of mostly-ASCII text."""
    head = blob[:4096]
    if len(head) < 4 or len(blob) % 2:
        return None
    pairs = len(head) // 2
    if head[1::2].count(0) > pairs * 0.4 and head[0::2].count(0) < pairs * 0.05:
        return "utf-16-le"
    if head[0::2].count(0) > pairs * 0.4 and head[1::2].count(0) < pairs * 0.05:
        return "utf-16-be"
    return None


def read_text(
    blob: bytes, kind: Kind, charset: str | None, limits: ExtractionLimits
) -> ExtractedText:
    """Plain text or Markdown: decoded, newlines normalised, bounded."""
    decoded = decode_text(blob, charset)
    warnings = [decoded.warning] if decoded.warning else []
    text = cap_text(_NEWLINES.sub("\n", decoded.text).lstrip("\ufeff"), limits, warnings)
    return ExtractedText(
        text=text,
        kind=kind,
        structured=kind == "markdown",
        metadata={"encoding": decoded.encoding},
        warnings=warnings,
    )


def read_csv(blob: bytes, charset: str | None, limits: ExtractionLimits) -> ExtractedText:
    """One line per row, each value labelled with its column: "name: Ada | born: 1815"."""
    decoded = decode_text(blob, charset)
    warnings = [decoded.warning] if decoded.warning else []
    source = _NEWLINES.sub("\n", decoded.text).lstrip("\ufeff")
    try:
        lines, rows = _csv_lines(source, limits.max_chars)
    except csv.Error:
        warnings.append("The CSV could not be parsed; it was read as plain text")
        text = cap_text(source, limits, warnings)
        return ExtractedText(text=text, kind="csv", metadata={"encoding": decoded.encoding},
                             warnings=warnings)  # fmt: skip
    text = cap_text("\n".join(lines), limits, warnings)
    metadata: Metadata = {"encoding": decoded.encoding, "rows": rows}
    return ExtractedText(text=text, kind="csv", metadata=metadata, warnings=warnings)


def _csv_lines(source: str, max_chars: int) -> tuple[list[str], int]:
    sample = source[:16_384]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, ",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if sample.count("\t") > sample.count(",") else csv.excel
    reader = csv.reader(io.StringIO(source), dialect)
    header = next(reader, None)
    if header is None:
        return [], 0
    columns = [name.strip() or f"column {i + 1}" for i, name in enumerate(header)]
    lines: list[str] = []
    size, rows = 0, 0
    for row in reader:
        cells = [
            f"{columns[i] if i < len(columns) else f'column {i + 1}'}: {value.strip()}"
            for i, value in enumerate(row)
            if value.strip()
        ]
        if not cells:
            continue
        line = " | ".join(cells)
        lines.append(line)
        rows += 1
        size += len(line) + 1
        if size > max_chars:
            break  # cap_text reports the truncation
    if rows == 0:  # a header alone is still the file's content
        lines = [" | ".join(columns)]
    return lines, rows


def read_json(blob: bytes, charset: str | None, limits: ExtractionLimits) -> ExtractedText:
    """Pretty-printed JSON (keys and values readable, non-ASCII unescaped)."""
    decoded = decode_text(blob, charset)
    warnings = [decoded.warning] if decoded.warning else []
    source = decoded.text.lstrip("\ufeff")
    try:
        value = msgspec.json.decode(source.encode())
        pretty = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    except (msgspec.DecodeError, RecursionError):
        warnings.append("The file is not valid JSON; it was read as plain text")
        pretty = _NEWLINES.sub("\n", source)
    text = cap_text(pretty, limits, warnings)
    return ExtractedText(text=text, kind="json", metadata={"encoding": decoded.encoding},
                         warnings=warnings)  # fmt: skip
