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
    cut: bool = False  # only the first part of the bytes was decoded (see `max_chars`)


def decode_text(
    blob: bytes, charset: str | None = None, max_chars: int | None = None
) -> DecodedText:
    """Bytes to text: BOMs, then a declared charset, UTF-8, BOM-less UTF-16, then cp1252.

    Raises `ExtractionError` for binary content. A lossy fallback is reported in
    `warning` rather than hidden. With `max_chars`, only the bytes that can hold that
    many characters are decoded (a sequence cut at the end is dropped, not an error):
    the caller caps the text there anyway, so a 100 MB upload never becomes a 400 MB str.
    """
    final = True
    # one character more than the cap: whoever caps the text sees that it was cut
    if max_chars is not None and len(blob) > (max_chars + 1) * 4:
        blob, final = blob[: (max_chars + 1) * 4], False
    decoded = _decode_any(blob, charset, final)
    return decoded if final else msgspec.structs.replace(decoded, cut=True)


def _decode_any(blob: bytes, charset: str | None, final: bool) -> DecodedText:
    for bom, codec in _BOMS:
        if blob.startswith(bom):
            return _decode_with(blob, codec, codec.replace("-sig", ""), final)
    if charset and charset not in ("utf-8", "utf8"):
        try:
            return DecodedText(text=_decode(blob, charset, final), encoding=charset)
        except (LookupError, UnicodeDecodeError):
            pass
    utf16 = _bomless_utf16(blob)
    if utf16 is not None:
        return _decode_with(blob, utf16, utf16, final)
    if looks_binary(blob[:4096]):
        raise unsupported("The file looks binary, not text, and its type is not supported")
    try:
        return DecodedText(text=_decode(blob, "utf-8", final), encoding="utf-8")
    except UnicodeDecodeError:
        pass
    mostly_utf8 = _decode(blob, "utf-8", final, errors="replace")
    if mostly_utf8.count("\ufffd") <= max(2, len(mostly_utf8) // 10_000):
        return DecodedText(
            text=mostly_utf8,
            encoding="utf-8",
            warning="A few bytes were not valid UTF-8 and were replaced",
        )
    try:
        text, encoding = _decode(blob, "cp1252", final), "windows-1252"
    except UnicodeDecodeError:
        text, encoding = _decode(blob, "latin-1", final), "latin-1"
    return DecodedText(
        text=text,
        encoding=encoding,
        warning=f"The text is not UTF-8; it was read as {encoding}, some characters may be wrong",
    )


def _decode(blob: bytes, codec: str, final: bool, errors: str = "strict") -> str:
    """`blob.decode`, but a text cut short (`final` False) may end inside a character."""
    if final:
        return blob.decode(codec, errors)
    return codecs.getincrementaldecoder(codec)(errors).decode(blob, final=False)


def _decode_with(blob: bytes, codec: str, label: str, final: bool = True) -> DecodedText:
    try:
        return DecodedText(text=_decode(blob, codec, final), encoding=label)
    except UnicodeDecodeError:
        return DecodedText(
            text=_decode(blob, codec, final, errors="replace"),
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
    decoded = decode_text(blob, charset, limits.max_chars)
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
    decoded = decode_text(blob, charset, limits.max_chars)
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
    """Pretty-printed JSON (keys and values readable, non-ASCII unescaped).

    Decoding builds every value as an object first, so JSON over `max_json_bytes` is
    read as text (bounded like any text) instead.
    """
    too_big = len(blob) > limits.max_json_bytes
    decoded = decode_text(blob, charset, limits.max_chars if too_big else None)
    warnings = [decoded.warning] if decoded.warning else []
    source = decoded.text.lstrip("\ufeff")
    if too_big:
        warnings.append(
            f"The JSON is larger than {limits.max_json_bytes / 2**20:,.0f} MiB; "
            "it was read as plain text"
        )
        pretty = _NEWLINES.sub("\n", source)
    else:
        try:
            value = msgspec.json.decode(source.encode())
            pretty = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
        except (msgspec.DecodeError, RecursionError):
            warnings.append("The file is not valid JSON; it was read as plain text")
            pretty = _NEWLINES.sub("\n", source)
    text = cap_text(pretty, limits, warnings)
    return ExtractedText(text=text, kind="json", metadata={"encoding": decoded.encoding},
                         warnings=warnings)  # fmt: skip
