"""Vectors as little-endian float32 bytes: how embeddings cross NATS, and what OpenAI's
`encoding_format: base64` carries (base64 of exactly these bytes)."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Sequence

_SWAP = sys.byteorder != "little"
SIZE = 4


def pack(rows: Iterable[Sequence[float]]) -> bytes:
    """Rows of floats as one run of little-endian float32s (each value rounded to float32)."""
    values = array("f")
    for row in rows:
        values.extend(row)
    if _SWAP:
        values.byteswap()
    return values.tobytes()


def unpack(data: bytes) -> list[float]:
    """The floats of little-endian float32 bytes."""
    values = array("f")
    values.frombytes(data)
    if _SWAP:
        values.byteswap()
    return values.tolist()


def rows(data: bytes, dimensions: int) -> list[bytes]:
    """`data` cut into vectors of `dimensions` float32s each."""
    width = dimensions * SIZE
    return [data[start : start + width] for start in range(0, len(data), width)]
