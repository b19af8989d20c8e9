"""Reading JSON bodies into Structs, with errors that name the field."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web

from common.codec import UnreadableJSON, decode
from common.errors import invalid

T = TypeVar("T")

JSON = "application/json"
TRUE = b"true"


async def read_body(request: web.Request) -> bytes:
    """The raw body; aiohttp enforces the app's size limit (413 past it)."""
    body = await request.read()
    if not body:
        raise invalid("A JSON body is required")
    return body


def parse(body: bytes, type_: type[T]) -> T:
    try:
        result: T = decode(body, type_)
    except msgspec.ValidationError as exc:
        raise invalid(f"Invalid request body: {exc}") from None
    except UnreadableJSON as exc:
        raise invalid(f"Malformed JSON body: {exc}") from None
    except msgspec.DecodeError:
        raise invalid("Malformed JSON body") from None
    return result


def json_bytes(body: bytes, status: int = 200) -> web.Response:
    """A reply whose JSON bytes were made elsewhere (a service): sent as they are."""
    return web.Response(status=status, body=body, content_type=JSON)


def json_value(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(value), content_type=JSON)
