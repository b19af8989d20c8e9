"""The stream protocol between the inference-proxy and the gateway, defined once.

A stream travels as plain messages on an inbox the caller listens on before asking:
each data message is bytes ready to write to the HTTP client (for chat: SSE events,
`data: {...}\\n\\n`, possibly several); the last message carries the header
STREAM_HEADER=STREAM_END and a Struct body (`contracts.chat.StreamEnd`,
`contracts.ollama.OllamaProxyEnd`). A chat stream's bytes close themselves: they end
with DONE, after an error event when it failed; a caller that got an end without them
writes `closing_bytes` for it.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

STREAM_HEADER = "Ragway-Stream"
STREAM_END = "end"
END_HEADERS: Mapping[str, str] = {STREAM_HEADER: STREAM_END}

DONE = b"data: [DONE]\n\n"
_encode = msgspec.json.Encoder().encode


def is_end(headers: Mapping[str, str] | None) -> bool:
    """The message with these headers ends its stream."""
    return headers is not None and headers.get(STREAM_HEADER) == STREAM_END


def sse(payload: bytes) -> bytes:
    """One SSE event carrying `payload` (JSON)."""
    return b"data: " + payload + b"\n\n"


def error_event(message: str) -> bytes:
    """What ends a chat stream that failed: an OpenAI-style error event, then DONE."""
    return sse(_encode({"error": {"message": message}})) + DONE


def closed(data: bytes) -> bool:
    """`data`, the last bytes of a chat stream, close it (they end with DONE)."""
    return data.endswith(DONE)


def closing_bytes(last: bytes, error: str | None) -> bytes:
    """What a relay still writes after a chat stream's `last` bytes: nothing when they
    closed it, else an error event (the end message's `error`, or a generic one)."""
    if closed(last):
        return b""
    return error_event(error or "The stream ended unexpectedly")
