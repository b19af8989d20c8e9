"""Content-Encoding: the codings this client decodes, and a clear refusal for the rest.

The client asks for `identity` (a generation stream gains nothing from compression on
the way to the proxy, and a compressing backend may hold tokens back to fill a block).
A backend, or a proxy in between, that compresses anyway is decoded: gzip and deflate
always, br only when a Brotli module (`brotli` or `brotlicffi`) is installed. Any other
coding is refused with an error naming it, rather than handing on bytes nobody can read.
"""

from __future__ import annotations

import importlib
import zlib
from typing import Any, Protocol

from inference_proxy.backend_http.errors import BackendProtocolError


class Decoder(Protocol):
    def decode(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class _Inflate:
    """gzip (RFC 1952) or deflate: zlib-wrapped (RFC 1950) as the standard says, or raw
    (RFC 1951) as some servers send it; told apart by the first byte, as browsers do."""

    __slots__ = ("_coding", "_zlib")

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._zlib: Any = None

    def decode(self, data: bytes) -> bytes:
        inflater = self._zlib
        if inflater is None:
            if self._coding == "gzip":
                wbits = 16 + zlib.MAX_WBITS
            else:  # a zlib header's first byte names the deflate method (8) in its low bits
                wbits = zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS
            inflater = self._zlib = zlib.decompressobj(wbits)
        try:
            return inflater.decompress(data)
        except zlib.error:
            raise BackendProtocolError(f"The backend's {self._coding} body is corrupt") from None

    def flush(self) -> bytes:
        if self._zlib is None:
            return b""
        try:
            return self._zlib.flush()
        except zlib.error:
            raise BackendProtocolError(f"The backend's {self._coding} body is corrupt") from None


class _Brotli:
    __slots__ = ("_decompressor",)

    def __init__(self, module: Any) -> None:
        self._decompressor = module.Decompressor()

    def decode(self, data: bytes) -> bytes:
        try:
            return self._decompressor.process(data)
        except Exception:  # brotli.error / brotlicffi.Error
            raise BackendProtocolError("The backend's br body is corrupt") from None

    def flush(self) -> bytes:
        return b""


def _brotli_module() -> Any:
    for name in ("brotli", "brotlicffi"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def decoders_for(content_encoding: str) -> list[Decoder]:
    """The decoders for a Content-Encoding value, in the order to apply them (the last
    coding applied by the sender comes off first); [] for identity. Raises
    BackendProtocolError naming a coding this client cannot decode."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    decoders: list[Decoder] = []
    for coding in reversed(codings):
        if coding in ("", "identity"):
            continue
        if coding in ("gzip", "x-gzip"):
            decoders.append(_Inflate("gzip"))
        elif coding == "deflate":
            decoders.append(_Inflate("deflate"))
        elif coding == "br" and (module := _brotli_module()) is not None:
            decoders.append(_Brotli(module))
        else:
            raise BackendProtocolError(
                f"The backend answered with Content-Encoding {coding!r}, which ragway cannot "
                "decode (it asks for identity; gzip and deflate are decoded)"
            )
    return decoders
