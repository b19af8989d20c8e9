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


class UnreadableJSON(msgspec.DecodeError):
    """Bytes msgspec cannot walk at all (the reason is the message)."""


def decode(data: bytes, type_: type[T]) -> T:
    """`data` as `type_`; every way untrusted bytes can fail is a `msgspec.DecodeError`
    (`ValidationError` for the wrong shape, `UnreadableJSON` for a nesting bomb or bytes
    that are not UTF-8), so callers catch one error."""
    try:
        result: T = json_decoder(type_).decode(data)
    except RecursionError:  # msgspec's answer to a nesting bomb (`[[[[...`)
        raise UnreadableJSON("nested too deeply") from None
    except UnicodeDecodeError:
        raise UnreadableJSON("not valid UTF-8") from None
    return result
