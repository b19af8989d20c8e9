"""msgspec encoders/decoders built once and reused (msgspec's performance advice)."""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

json_encoder = msgspec.json.Encoder()


@cache
def json_decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    """A typed JSON decoder, cached per type."""
    return msgspec.json.Decoder(type_)


def encode(value: Any) -> bytes:
    return json_encoder.encode(value)


def decode(data: bytes, type_: type[T]) -> T:
    result: T = json_decoder(type_).decode(data)
    return result
