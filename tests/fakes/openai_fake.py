"""A fake OpenAI-compatible server (`/v1/models`, `/v1/chat/completions`,
`/v1/embeddings`), streaming real SSE like api.openai.com / llama-server: one id, role in
the first delta, usage when `stream_options.include_usage`, then `data: [DONE]`.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import (
    FakeBackend,
    count_words,
    echo_pieces,
    float32_base64,
    last_user_text,
)
from tests.fakes.ollama_fake import embedding_of


@dataclass
class ScriptedReply:
    """What the fake answers: content pieces (streamed one per chunk), optional tool calls."""

    pieces: list[str]
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str = "stop"


def echo_reply(body: dict[str, Any]) -> ScriptedReply:
    return ScriptedReply(pieces=echo_pieces(last_user_text(body.get("messages"))))


def usage_of(body: dict[str, Any], reply: ScriptedReply) -> dict[str, int]:
    prompt = count_words(body.get("messages"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": len(reply.pieces),
        "total_tokens": prompt + len(reply.pieces),
    }


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def sse_events(
    body: dict[str, Any], reply: ScriptedReply, encode: Callable[[Any], bytes] = _json_bytes
) -> list[bytes]:
    """The SSE events of one streamed reply: one id, the role first, a chunk per piece,
    the tool calls, the finish chunk, usage when `stream_options.include_usage`, `[DONE]`."""
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model"),
        "system_fingerprint": "fp_fake",
    }
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        obj: dict[str, Any] = {
            **head,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            obj["usage"] = None
        return b"data: " + encode(obj) + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": piece}, None) for piece in reply.pieces]
    if reply.tool_calls:
        calls = [{"index": i, **call} for i, call in enumerate(reply.tool_calls)]
        events.append(chunk({"tool_calls": calls}, None))
    events.append(chunk({}, reply.finish_reason))
    if include_usage:
        usage = {**head, "choices": [], "usage": usage_of(body, reply)}
        events.append(b"data: " + encode(usage) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def _error(status: int, message: str, type_: str, code: str | None = None) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": type_, "param": None, "code": code}},
        status=status,
    )


# api.openai.com's chat completion parameters and message fields (what `strict` allows)
OPENAI_CHAT_FIELDS = frozenset(
    {
        "model", "messages", "stream", "stream_options", "temperature", "top_p", "n", "stop",
        "max_tokens", "max_completion_tokens", "presence_penalty", "frequency_penalty",
        "logit_bias", "logprobs", "top_logprobs", "user", "seed", "tools", "tool_choice",
        "parallel_tool_calls", "response_format", "functions", "function_call", "service_tier",
        "store", "metadata", "modalities", "audio", "prediction", "reasoning_effort",
        "web_search_options", "verbosity", "safety_identifier", "prompt_cache_key",
    }
)  # fmt: skip
OPENAI_MESSAGE_FIELDS = frozenset(
    {"role", "content", "name", "tool_calls", "tool_call_id", "refusal", "audio", "function_call"}
)


OPENAI_EMBEDDING_FIELDS = frozenset({"input", "model", "encoding_format", "dimensions", "user"})


def shortened(vector: list[float], dimensions: int | None) -> list[float]:
    """`dimensions` as text-embedding-3 models apply it: the first ones, unit length again."""
    if dimensions is None or dimensions >= len(vector):
        return vector
    head = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in head)) or 1.0
    return [v / norm for v in head]


def _unrecognized(body: dict[str, Any]) -> web.Response | None:
    """OpenAI's 400 for the first field it does not know, top-level or in a message."""
    for name in body:
        if name not in OPENAI_CHAT_FIELDS:
            return _error(
                400, f"Unrecognized request argument supplied: {name}", "invalid_request_error"
            )
    for index, message in enumerate(body.get("messages") or []):
        extra = sorted(set(message) - OPENAI_MESSAGE_FIELDS) if isinstance(message, dict) else []
        if extra:
            return _error(
                400,
                f"Additional properties are not allowed ('{extra[0]}' was unexpected)"
                f" - 'messages.{index}'",
                "invalid_request_error",
            )
    return None


@dataclass
class OpenAIFake(FakeBackend):
    """Knobs (change them between requests): `api_key` (None accepts any), `models`,
    `tokens_per_reply` (N pieces `t0 `.. instead of the echo), `token_delay` (seconds
    between chunks), `fail_after_chunks` (abort the connection after N SSE events),
    `hang` (never answer), `error_status` (answer every chat and embeddings request with it),
    `responder` (body -> ScriptedReply, e.g. tool calls), `strict` (refuse unknown request
    fields and message fields with OpenAI's 400, as api.openai.com does). Every model
    also embeds (`embedding_of`, 8 dimensions, like llama-server with `--embeddings`)."""

    api_key: str | None = "sk-fake-key"
    models: list[str] = field(default_factory=lambda: ["gpt-fake", "gpt-fake-mini"])
    tokens_per_reply: int | None = None
    token_delay: float = 0.0
    fail_after_chunks: int | None = None
    hang: bool = False
    error_status: int | None = None
    responder: Callable[[dict[str, Any]], ScriptedReply] | None = None
    strict: bool = False
    # what the last chat request carried (its top-level field names), for tests
    last_fields: set[str] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        """The URL to configure (OPENAI_API_BASE_URLS entries end in /v1)."""
        return f"{self.origin}/v1"

    async def start(self) -> str:
        await super().start()
        return self.base_url

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/models", self.list_models),
            web.post("/v1/chat/completions", self.chat_completions),
            web.post("/v1/embeddings", self.embeddings),
        ]

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(
                401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
        return None

    async def list_models(self, request: web.Request) -> web.Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}
                    for m in self.models
                ],
            }
        )

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        if self.hang:
            await self._release.wait()
            return web.Response(status=503)
        if self.error_status is not None:
            return _error(
                self.error_status,
                f"Fake backend error {self.error_status}",
                "server_error" if self.error_status >= 500 else "invalid_request_error",
            )
        try:
            body = await request.json()
        except ValueError:
            return _error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.", "invalid_request_error")
        self.last_fields = set(body)
        if self.strict and (refusal := _unrecognized(body)) is not None:
            return refusal
        model = body.get("model")
        if model not in self.models:
            return _error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        reply = self._reply(body)
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.pieces)}
            if reply.tool_calls:
                message["tool_calls"] = reply.tool_calls
            return web.json_response(
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "logprobs": None,
                            "finish_reason": reply.finish_reason,
                        }
                    ],
                    "usage": usage_of(body, reply),
                    "system_fingerprint": "fp_fake",
                }
            )
        events = sse_events(body, reply)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        return await self.write_stream(
            request, response, events, delay=self.token_delay, drop_after=self.fail_after_chunks
        )

    async def embeddings(self, request: web.Request) -> web.Response:
        """OpenAI's `CreateEmbeddingResponse`; floats, or base64 float32 when asked."""
        if (denied := self._unauthorized(request)) is not None:
            return denied
        if self.error_status is not None:
            return _error(self.error_status, f"Fake backend error {self.error_status}", "api_error")
        try:
            body = await request.json()
        except ValueError:
            return _error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        self.last_fields = set(body) if isinstance(body, dict) else set()
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.", "invalid_request_error")
        if self.strict and (extra := sorted(set(body) - OPENAI_EMBEDDING_FIELDS)):
            return _error(
                400, f"Unrecognized request argument supplied: {extra[0]}", "invalid_request_error"
            )
        model = body.get("model")
        if model not in self.models:
            return _error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if (
            not isinstance(texts, list)
            or not texts
            or not all(isinstance(t, str) and t for t in texts)
        ):
            return _error(400, "'$.input' is invalid.", "invalid_request_error")
        dimensions = body.get("dimensions")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = shortened(embedding_of(text), dimensions)
            encoded: Any = float32_base64(vector) if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(text.split()) for text in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def _reply(self, body: dict[str, Any]) -> ScriptedReply:
        if self.responder is not None:
            return self.responder(body)
        if self.tokens_per_reply is not None:
            return ScriptedReply(pieces=[f"t{i} " for i in range(self.tokens_per_reply)])
        return echo_reply(body)


__all__ = ["OpenAIFake", "ScriptedReply", "echo_reply", "float32_base64", "shortened"]
