"""What the inference-proxy and a sandbox worker process say to each other over the
worker's stdin/stdout: length-prefixed msgpack frames. Imported by the worker, so it
must stay light (stdlib + msgspec only)."""

from __future__ import annotations

import struct
from typing import Any, BinaryIO, Literal

import msgspec

# valves_spec: the Valves class's JSON schema (None: it has none); valves_check: the
# `valves` given, validated by that class (a Failure with invalid=True when they are not)
Op = Literal["inspect_pipe", "inspect_tools", "pipe", "tool", "valves_spec", "valves_check"]
MAX_FRAME_BYTES = 64 * 1024 * 1024
_LENGTH = struct.Struct(">I")


class Call(msgspec.Struct, kw_only=True, tag=True):
    """One job for one worker process: load `source`, then do `op`."""

    op: Op
    plugin_id: str
    source: str
    body: dict[str, Any] | None = None  # a pipe's request body
    method: str = ""  # a tool call's method
    arguments: dict[str, Any] = {}
    user: dict[str, Any] = {}
    # the admin's valve values: set as `self.valves = self.Valves(**valves)` on the
    # plugin's Pipe or Tools instance (Open WebUI's way), or checked by valves_check
    valves: dict[str, Any] = {}


class Chunk(msgspec.Struct, kw_only=True, tag_field="kind", tag=True):
    """A piece of a streaming pipe's answer."""

    text: str


class Result(msgspec.Struct, kw_only=True, tag_field="kind", tag=True):
    """The call finished: the whole answer (or tool result), or the tool specs found."""

    text: str = ""
    specs: list[dict[str, Any]] | None = None
    data: dict[str, Any] | None = None  # valves_spec's schema, valves_check's values


class Failure(msgspec.Struct, kw_only=True, tag_field="kind", tag=True):
    """The admin's code failed; `invalid` when the source breaks the rules."""

    type: str
    message: str
    invalid: bool = False


Frame = Chunk | Result | Failure

encode = msgspec.msgpack.Encoder().encode
call_decoder = msgspec.msgpack.Decoder(Call)
frame_decoder = msgspec.msgpack.Decoder(Frame)


def framed(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


def frame_length(header: bytes) -> int:
    (length,) = _LENGTH.unpack(header)
    return int(length)


def read_call(stream: BinaryIO) -> Call | None:
    """The worker's one call, or None when the proxy closed stdin (shutdown)."""
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None
    payload = stream.read(frame_length(header))
    return call_decoder.decode(payload)
