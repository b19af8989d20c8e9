"""msgspec encoders/decoders built once and reused (msgspec's performance advice)."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

json_encoder = msgspec.json.Encoder()


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def json_decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    """A typed JSON decoder, built once per type."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    return decoder


def encode(value: Any) -> bytes:
    return json_encoder.encode(value)


def decode(data: bytes, type_: type[T]) -> T:
    result: T = json_decoder(type_).decode(data)
    return result
