"""Backend stream bodies to the SSE ragway sends: one id, the role in the first delta,
a last chunk with finish_reason and usage, then `data: [DONE]`.

These are on every token's path: they decode only the fields they look at (typed
msgspec Structs) and forward a backend's bytes untouched when nothing needs fixing.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

from contracts.streams import DONE, sse
from inference_proxy.errors import StreamFailure
from inference_proxy.ollama_convert import finish_reason, ollama_usage, openai_tool_calls

_json_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode


class _LineTranslator:
    """Splits arriving bytes into lines; subclasses turn each line into SSE bytes."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.done = False
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        # the tool calls so far, by index, their streamed fragments joined
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self._pending = b""

    @property
    def content(self) -> str:
        return "".join(self.parts)

    def feed(self, data: bytes) -> bytes:
        """SSE bytes to send for what arrived (possibly several events, possibly none)."""
        if self._pending:
            data = self._pending + data
        lines = data.split(b"\n")
        self._pending = lines.pop()
        out = []
        for line in lines:
            if self.done:
                break
            if len(line) < 2:
                continue  # the blank line after each SSE event
            piece = self._line(line.rstrip(b"\r"))
            if piece:
                out.append(piece)
        return b"".join(out)

    def _line(self, line: bytes) -> bytes | None:
        raise NotImplementedError

    def _merge_calls(self, pieces: list[Any]) -> None:
        """Join streamed tool-call fragments (OpenAI sends arguments in pieces)."""
        calls = self.tool_calls
        for piece in pieces:
            if not isinstance(piece, dict):
                continue
            index = piece.get("index", len(calls))
            call = calls.setdefault(
                index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
            if piece.get("id"):
                call["id"] = piece["id"]
            function = piece.get("function")
            if not isinstance(function, dict):
                continue
            if function.get("name"):
                call["function"]["name"] += function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                call["function"]["arguments"] += arguments
            elif isinstance(arguments, dict):
                call["function"]["arguments"] = _encode(arguments).decode()

    def close(self) -> bytes:
        """The last bytes of a stream that ended; StreamFailure when it ended too early."""
        raise NotImplementedError


# --- OpenAI-compatible SSE ------------------------------------------------------------


class _Delta(msgspec.Struct):
    role: str | None = None
    content: str | None = None
    tool_calls: list[Any] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    id: str | None = None
    created: int | None = None
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: dict[str, Any] | None = None
    error: Any = None


_chunk_decoder = msgspec.json.Decoder(_Chunk)


class OpenAIStream(_LineTranslator):
    """Relays an OpenAI-compatible SSE stream, holding back the finish chunk until the
    usage chunk (sent after it when `stream_options.include_usage`) can join it."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.id: str | None = None
        self.created = int(time.time())
        self._started = False  # a chunk (with the role) went out
        self._held: dict[str, Any] | None = None  # the finish chunk, waiting for usage
        self._finished = False  # the finish chunk went out

    def _line(self, line: bytes) -> bytes | None:
        if line.startswith(b"data:"):
            payload = line[5:].strip()
        elif line.startswith(b"{"):
            payload = line  # a bare JSON error some servers send instead of SSE
        else:
            return None  # blank lines, comments, `event:`/`id:` fields
        if payload == b"[DONE]":
            self.done = True
            return None
        try:
            chunk = _chunk_decoder.decode(payload)
        except msgspec.DecodeError:
            raise StreamFailure("The model backend sent malformed data") from None
        if chunk.error is not None:
            raise StreamFailure(_error_text(chunk.error))
        if self.id is None:
            self.id = chunk.id or f"chatcmpl-{uuid.uuid4()}"
            self.created = chunk.created or self.created
            self.model = chunk.model or self.model
        if chunk.usage:
            self.usage = chunk.usage
        if not chunk.choices:
            if self._held is not None and self.usage is not None:
                return self._release_held()
            return None
        choice = chunk.choices[0]
        delta = choice.delta
        if delta is not None:
            if delta.content:
                self.parts.append(delta.content)
            if delta.tool_calls:
                self._merge_calls(delta.tool_calls)
        if choice.finish_reason:
            self.finish_reason = choice.finish_reason
            self._held = self._fixed(payload)
            if chunk.usage:
                return self._release_held()
            return None
        if self._started and chunk.id == self.id:
            return sse(payload)  # the common case: forwarded without re-encoding
        if not self._started and chunk.id == self.id and delta is not None and delta.role:
            self._started = True
            return sse(payload)
        return sse(_encode(self._fixed(payload)))

    def _fixed(self, payload: bytes) -> dict[str, Any]:
        """The chunk with the stream's id and, on the first one, the assistant role."""
        obj: dict[str, Any] = _json_decode(payload)
        obj["id"] = self.id
        if not self._started:
            choices = obj.get("choices") or [{"index": 0, "delta": {}}]
            delta = choices[0].setdefault("delta", {})
            if isinstance(delta, dict):
                delta["role"] = "assistant"
            obj["choices"] = choices
            self._started = True
        return obj

    def _release_held(self) -> bytes:
        assert self._held is not None
        held, self._held = self._held, None
        held["usage"] = self.usage
        self._finished = True
        return sse(_encode(held))

    def close(self) -> bytes:
        if self._held is not None:
            return self._release_held() + DONE
        if self._finished:
            return DONE
        if not self.done:
            raise StreamFailure("The model backend ended the stream before finishing")
        # [DONE] without any finish_reason: add the last chunk clients expect
        self.finish_reason = "stop"
        final = _final_chunk(
            self.id or f"chatcmpl-{uuid.uuid4()}",
            self.created,
            self.model,
            "stop",
            self.usage,
            first=not self._started,
        )
        return sse(final) + DONE


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        error = error.get("message") or error
    return str(error)[:500] or "The model backend failed"


# --- Ollama NDJSON --------------------------------------------------------------------


class _OllamaMessage(msgspec.Struct):
    content: str = ""
    thinking: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class _OllamaLine(msgspec.Struct):
    message: _OllamaMessage | None = None
    done: bool = False
    error: str | None = None


_ollama_decoder = msgspec.json.Decoder(_OllamaLine)


class _OutDelta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class _OutChoice(msgspec.Struct):
    index: int
    delta: _OutDelta
    logprobs: None
    finish_reason: str | None


class _OutChunk(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[_OutChoice]
    usage: dict[str, Any] | None = None


def _final_chunk(
    id_: str, created: int, model: str, reason: str, usage: dict[str, Any] | None, *, first: bool
) -> bytes:
    delta = _OutDelta(role="assistant" if first else None)
    return _encode(
        _OutChunk(
            id=id_,
            object="chat.completion.chunk",
            created=created,
            model=model,
            choices=[_OutChoice(index=0, delta=delta, logprobs=None, finish_reason=reason)],
            usage=usage,
        )
    )


class OllamaStream(_LineTranslator):
    """Translates Ollama's `/api/chat` NDJSON into `chat.completion.chunk` events."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.id = f"chatcmpl-{uuid.uuid4()}"
        self.created = int(time.time())
        self._first = True
        self._tool_calls = False

    def _line(self, line: bytes) -> bytes | None:
        if not line.strip():
            return None
        try:
            data = _ollama_decoder.decode(line)
        except msgspec.DecodeError:
            raise StreamFailure("The model backend sent malformed data") from None
        if data.error is not None:
            raise StreamFailure(data.error[:500] or "The model backend failed")
        message = data.message
        delta = _OutDelta()
        if message is not None:
            if message.content:
                delta.content = message.content
                self.parts.append(message.content)
            if message.thinking:
                delta.reasoning_content = message.thinking
            if message.tool_calls:
                delta.tool_calls = openai_tool_calls(message.tool_calls)
                self._merge_calls(delta.tool_calls)
                self._tool_calls = True
        if self._first:
            delta.role = "assistant"
            self._first = False
        reason: str | None = None
        usage: dict[str, Any] | None = None
        if data.done:
            stats: dict[str, Any] = _json_decode(line)
            reason = self.finish_reason = finish_reason(stats, self._tool_calls)
            usage = self.usage = ollama_usage(stats)
            self.done = True
        elif (
            delta.content is None
            and delta.reasoning_content is None
            and not delta.tool_calls
            and delta.role is None
        ):
            return None
        return sse(
            _encode(
                _OutChunk(
                    id=self.id,
                    object="chat.completion.chunk",
                    created=self.created,
                    model=self.model,
                    choices=[_OutChoice(index=0, delta=delta, logprobs=None, finish_reason=reason)],
                    usage=usage,
                )
            )
        )

    def close(self) -> bytes:
        if not self.done:
            raise StreamFailure("The model backend ended the stream before finishing")
        return DONE
