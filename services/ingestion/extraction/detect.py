"""Which reader a file needs: content type and extension, checked against magic bytes."""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

from ingestion.documents import Kind
from ingestion.errors import unreadable, unsupported

_EXTENSIONS: dict[str, Kind] = {
    "md": "markdown", "markdown": "markdown", "mdx": "markdown",
    "csv": "csv", "tsv": "csv",
    "json": "json",
    "html": "html", "htm": "html", "xhtml": "html",
    "pdf": "pdf",
    "docx": "docx",
}  # fmt: skip
# Extensions of plain-text formats (code, config, logs) that are read as text.
_TEXT_EXTENSIONS = frozenset([
    "txt", "text", "log", "rst", "adoc", "org", "ini", "cfg", "conf", "toml", "yaml", "yml",
    "xml", "env", "properties", "py", "pyi", "js", "mjs", "ts", "tsx", "jsx", "java", "kt",
    "kts", "scala", "go", "rs", "rb", "php", "pl", "lua", "r", "c", "h", "cc", "cpp", "hpp",
    "cs", "swift", "m", "sql", "sh", "bash", "zsh", "ps1", "bat", "css", "scss", "less", "vue",
    "svelte", "tex", "bib", "srt", "vtt", "jsonl", "ndjson", "graphql", "proto", "dockerfile",
    "makefile", "gitignore",
])  # fmt: skip
_CONTENT_TYPES: dict[str, Kind] = {
    "text/plain": "text",
    "text/markdown": "markdown", "text/x-markdown": "markdown",
    "text/csv": "csv", "application/csv": "csv", "text/tab-separated-values": "csv",
    "application/json": "json", "text/json": "json",
    "text/html": "html", "application/xhtml+xml": "html",
    "application/pdf": "pdf", "application/x-pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
}  # fmt: skip
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})

# Binary formats we recognise only to refuse them with a useful message.
_REFUSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "PNG images are not supported (no OCR)"),
    (b"\xff\xd8\xff", "JPEG images are not supported (no OCR)"),
    (b"GIF8", "GIF images are not supported"),
    (b"II*\x00", "TIFF images are not supported (no OCR)"),
    (b"MM\x00*", "TIFF images are not supported (no OCR)"),
    (b"\xd0\xcf\x11\xe0", "Legacy Office files (.doc, .xls, .ppt) are not supported"),
    (b"\x1f\x8b", "Compressed (gzip) files are not supported"),
    (b"BZh", "Compressed (bzip2) files are not supported"),
    (b"7z\xbc\xaf", "7-Zip archives are not supported"),
    (b"Rar!", "RAR archives are not supported"),
    (b"\x7fELF", "Executable files are not supported"),
    (b"MZ", "Executable files are not supported"),
    (b"OggS", "Audio files are not supported"),
    (b"ID3", "Audio files are not supported"),
    (b"fLaC", "Audio files are not supported"),
    (b"RIFF", "Audio, video and WebP files are not supported"),
)
_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_KINDS: tuple[tuple[str, str | None], ...] = (
    ("word/document.xml", None),
    ("xl/workbook.xml", "Excel spreadsheets (.xlsx) are not supported yet"),
    ("ppt/presentation.xml", "PowerPoint files (.pptx) are not supported yet"),
)


def declared_kind(filename: str, content_type: str) -> Kind | None:
    """The kind the name or the content type claims; the extension wins when both do."""
    name = PurePosixPath(filename.replace("\\", "/")).name.lower()
    ext = name.rsplit(".", 1)[-1] if "." in name else name
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if ext in _TEXT_EXTENSIONS:
        return "text"
    mime = media_type(content_type)
    if mime in _CONTENT_TYPES:
        return _CONTENT_TYPES[mime]
    if mime.endswith("+json"):
        return "json"
    if mime.startswith("text/") or mime.endswith("+xml") or mime in (
        "application/xml", "application/javascript", "application/x-yaml", "application/yaml",
        "application/toml", "application/sql", "application/x-sh",
    ):  # fmt: skip
        return "text"
    return None


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def charset_of(content_type: str) -> str | None:
    """The `charset=` parameter of a content type, if any."""
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"').lower()
    return None


def detect_kind(blob: bytes, filename: str, content_type: str) -> Kind:
    """Choose the reader; magic bytes overrule a name or type that disagrees with them."""
    declared = declared_kind(filename, content_type)
    if b"%PDF-" in blob[:1024]:
        return "pdf"
    if blob.startswith(_ZIP_MAGIC):
        return _zip_kind(blob, declared)
    if declared == "pdf":
        raise unreadable("The file is called a PDF but its content is not a PDF")
    if declared == "docx":
        raise unreadable("The file is called a Word document (.docx) but is not one")
    if blob.startswith(b"{\\rtf"):
        raise unsupported("RTF documents are not supported; save as .docx or PDF")
    if looks_binary(blob[:4096]):
        for magic, reason in _REFUSED_MAGIC:
            if blob.startswith(magic):
                raise unsupported(reason)
    if declared is not None:
        return declared
    return _sniff_text_kind(blob)


def _zip_kind(blob: bytes, declared: Kind | None) -> Kind:
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        if declared == "docx":
            raise unreadable("The Word document (.docx) is damaged") from None
        raise unsupported("The file looks like a damaged ZIP archive") from None
    for member, refusal in _ZIP_KINDS:
        if member in names:
            if refusal is None:
                return "docx"
            raise unsupported(refusal)
    if declared == "docx":
        raise unreadable("The file is called a Word document (.docx) but is not one")
    raise unsupported("ZIP archives are not supported; upload the files inside it")


_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f\v\x1b")


def looks_binary(head: bytes) -> bool:
    """NUL bytes or many control bytes: not a text file (UTF-16/32 are checked first)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        return False
    if b"\x00" in head:
        return True
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return controls > max(1, len(head) // 20)


def _sniff_text_kind(blob: bytes) -> Kind:
    head = blob[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "html"
    return "text"
