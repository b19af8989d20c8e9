"""Every way untrusted JSON bytes fail to decode is one `msgspec.DecodeError`."""

from __future__ import annotations

import msgspec
import pytest

from common.codec import UnreadableJSON, decode


class Named(msgspec.Struct):
    model: str = ""


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"[" * 100_000, "nested too deeply"), (b'"\xff"', "not valid UTF-8")],
)
def test_bytes_msgspec_cannot_walk_are_unreadable_json(data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableJSON, match=reason) as caught:
        decode(data, object)
    assert isinstance(caught.value, msgspec.DecodeError)  # one except clause catches all


def test_malformed_and_wrongly_shaped_json_stay_msgspec_errors() -> None:
    with pytest.raises(msgspec.DecodeError) as malformed:
        decode(b"{", Named)
    assert not isinstance(malformed.value, UnreadableJSON)
    with pytest.raises(msgspec.ValidationError):
        decode(b'{"model": 1}', Named)
    assert decode(b'{"model": "m"}', Named) == Named(model="m")
