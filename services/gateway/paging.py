"""`?page=` as Open WebUI reads it: absent means the bare list (0.6 clients), a number
from 1 means one page in `{items, total}` (0.7+ clients); and the other query parameters
listings take (`?query=`, `?filter=`)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from common.codec import decode
from common.errors import invalid
from contracts.filters import MetadataFilter

MAX_PAGE = 1_000_000
MAX_TEXT = 256


class Paged(msgspec.Struct, kw_only=True):
    """Open WebUI's `{items, total}` pages (FileListResponse, KnowledgeListResponse, ...)."""

    items: list[Any]
    total: int


def page_of(request: web.Request) -> int | None:
    """The `page` query parameter: None when absent, `invalid` unless 1..MAX_PAGE."""
    raw = request.query.get("page")
    if raw is None:
        return None
    try:
        page = int(raw)
    except ValueError:
        raise invalid("`page` must be a positive integer") from None
    if not 1 <= page <= MAX_PAGE:
        raise invalid("`page` must be a positive integer")
    return page


def text_of(request: web.Request, name: str) -> str | None:
    """A short text query parameter (at most 256 characters); None when absent or blank."""
    value = request.query.get(name)
    if value is None or not value.strip():
        return None
    if len(value) > MAX_TEXT:
        raise invalid(f"`{name}` has at most {MAX_TEXT} characters")
    return value


def required_text(request: web.Request, name: str) -> str:
    value = text_of(request, name)
    if value is None:
        raise invalid(f"The query parameter `{name}` is required")
    return value


MAX_FILTER = 8192


def filter_of(request: web.Request) -> MetadataFilter | None:
    """`?filter=`: a metadata filter as JSON (`contracts.filters`); None when absent."""
    raw = request.query.get("filter")
    if raw is None or not raw.strip():
        return None
    if len(raw) > MAX_FILTER:
        raise invalid(f"`filter` has at most {MAX_FILTER} characters")
    return metadata_filter(raw.encode())


def metadata_filter(raw: bytes) -> MetadataFilter:
    """A filter from JSON bytes; `invalid` with the reason when it is not one."""
    try:
        return decode(raw, MetadataFilter)
    except msgspec.ValidationError as exc:
        raise invalid(f"Invalid filter: {exc}") from None
    except msgspec.DecodeError:
        raise invalid("Invalid filter: not JSON") from None
