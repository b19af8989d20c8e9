"""What an upload may be: a safe file name, a content type, and the types we refuse.

The policy follows Open WebUI (accept files and let processing decide) except for clearly
unsupported binaries (images, audio, video, archives, executables, legacy Office): those
are refused at once with 415 instead of being stored only to fail later. Anything else
is stored, and the ingestion workers either extract it or mark it `failed` with a reason.
"""

from __future__ import annotations

import mimetypes
import unicodedata
from pathlib import PurePosixPath
from urllib.parse import unquote

from common.errors import RagwayError

MAX_FILENAME_CHARS = 255
FALLBACK_NAME = "file"
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})

_REFUSED_EXTENSIONS: dict[str, str] = {
    **dict.fromkeys(
        ("png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff", "heic", "ico", "svgz"),
        "Images are not supported (no OCR)",
    ),
    **dict.fromkeys(
        ("mp3", "wav", "ogg", "oga", "flac", "m4a", "aac", "opus"), "Audio files are not supported"
    ),
    **dict.fromkeys(
        ("mp4", "mkv", "avi", "mov", "webm", "wmv", "m4v"), "Video files are not supported"
    ),
    **dict.fromkeys(
        ("zip", "gz", "tgz", "bz2", "xz", "7z", "rar", "tar", "zst"),
        "Archives are not supported; upload the files inside",
    ),
    **dict.fromkeys(
        ("exe", "dll", "so", "dylib", "bin", "iso", "dmg", "msi", "class", "jar", "o", "a"),
        "Executables and binary images are not supported",
    ),
    **dict.fromkeys(
        ("doc", "xls", "ppt"), "Legacy Office files (.doc, .xls, .ppt) are not supported"
    ),
    **dict.fromkeys(("xlsx", "pptx", "odt", "ods", "odp"), "This office format is not supported"),
}
_REFUSED_TYPE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("image/", "Images are not supported (no OCR)"),
    ("audio/", "Audio files are not supported"),
    ("video/", "Video files are not supported"),
)
_REFUSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n", "Images are not supported (no OCR)"),
    (b"\xff\xd8\xff", "Images are not supported (no OCR)"),
    (b"GIF87a", "Images are not supported"),
    (b"GIF89a", "Images are not supported"),
    (b"\x7fELF", "Executables are not supported"),
    (b"\x1f\x8b\x08", "Compressed (gzip) files are not supported"),
    (b"7z\xbc\xaf\x27\x1c", "Archives are not supported; upload the files inside"),
    (b"Rar!\x1a\x07", "Archives are not supported; upload the files inside"),
)


def safe_filename(raw: str | None) -> str:
    """The last path component, without control characters, at most 255 characters.

    Percent-escapes are decoded first: some clients (aiohttp among them) send `/` as `%2F`.
    """
    name = unquote(raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp"))
    name = name.strip().lstrip(".").strip()
    if not name:
        return FALLBACK_NAME
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_FILENAME_CHARS - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME_CHARS]
    return name


def extension(name: str) -> str:
    suffix = PurePosixPath(name).suffix
    return suffix[1:].lower() if suffix else ""


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def content_type_for(name: str, declared: str | None) -> str:
    """The part's own content type, or one guessed from the name when it is generic."""
    declared = (declared or "").strip()
    if media_type(declared) not in GENERIC_TYPES:
        return declared
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def refuse_unsupported(name: str, content_type: str) -> None:
    """415 for a name or content type that is clearly a binary we cannot extract."""
    reason = _REFUSED_EXTENSIONS.get(extension(name))
    if reason is None:
        mime = media_type(content_type)
        reason = next(
            (why for prefix, why in _REFUSED_TYPE_PREFIXES if mime.startswith(prefix)), None
        )
    if reason is not None:
        raise RagwayError("unsupported", f"{reason}: {name}")


def refuse_unsupported_bytes(name: str, head: bytes) -> None:
    """415 when the first bytes are a binary format we recognise, whatever the name says."""
    for magic, reason in _REFUSED_MAGIC:
        if head.startswith(magic):
            raise RagwayError("unsupported", f"{reason}: {name}")
