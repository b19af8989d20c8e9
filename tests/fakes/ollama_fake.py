"""A fake Ollama server speaking Ollama's real HTTP API (docs/api.md of ollama/ollama),
and its OpenAI-compatible routes under `/v1` (ollama/ollama openai/openai.go: `fp_ollama`,
`owned_by` the model's namespace, errors as `{"error": {"message", "type", ...}}`).

Answers are deterministic: a chat or generate request is answered with
`echo_pieces(<last user text or prompt>)`, streamed as NDJSON one piece per line (SSE
on the `/v1` routes).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import (
    FakeBackend,
    count_words,
    echo_pieces,
    float32_base64,
    last_user_text,
)

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
EMBEDDING_DIM = 8


def tags_entry(name: str) -> dict[str, Any]:
    """An `/api/tags` entry shaped like real Ollama's."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    family = name.split(":")[0].split("/")[-1].rstrip("0123456789.") or "llama"
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-05-01T10:00:00.000000000Z",
        "size": 1_000_000 + len(name),
        "digest": digest,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "1B",
            "quantization_level": "Q4_K_M",
        },
    }


def embedding_of(text: str) -> list[float]:
    """A deterministic unit vector for `text`."""
    digest = hashlib.sha256(text.encode()).digest()
    values = [(b - 127.5) / 127.5 for b in digest[:EMBEDDING_DIM]]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _stats(prompt_tokens: int, eval_tokens: int) -> dict[str, int]:
    """Timing fields like the final object of real Ollama (nanoseconds)."""
    return {
        "total_duration": 1_500_000_000 + eval_tokens * 20_000_000,
        "load_duration": 25_000_000,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": 50_000_000,
        "eval_count": eval_tokens,
        "eval_duration": eval_tokens * 20_000_000,
    }


def _line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def _not_found(model: str) -> web.Response:
    return web.json_response({"error": f"model '{model}' not found"}, status=404)


def _openai_error(status: int, message: str) -> web.Response:
    """Ollama's OpenAI-compatible error (openai.NewError)."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": None}},
        status=status,
    )


def _openai_not_found(model: str) -> web.Response:
    return _openai_error(404, f'model "{model}" not found, try pulling it first')


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


@dataclass
class OllamaFake(FakeBackend):
    """Knobs: `models`, `chunk_delay` (seconds between streamed lines), `pull_steps`
    (progress lines of `/api/pull`), `drop_after` (abort a chat/generate stream after that
    many lines), `hang_chat` (never answer chat/generate), `version`."""

    models: list[str] = field(default_factory=lambda: ["llama3.2:latest", "qwen2.5:0.5b"])
    chunk_delay: float = 0.0
    pull_steps: int = 10
    drop_after: int | None = None
    hang_chat: bool = False
    version: str = "0.6.8"
    # blobs pushed with `POST /api/blobs/<digest>` (what `api/create` with files uses)
    blobs: dict[str, bytes] = field(default_factory=dict)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.root),
            web.get("/api/version", self.api_version),
            web.get("/api/tags", self.api_tags),
            web.get("/api/ps", self.api_ps),
            web.post("/api/show", self.api_show),
            web.post("/api/chat", self.api_chat),
            web.post("/api/generate", self.api_generate),
            web.post("/api/embed", self.api_embed),
            web.post("/api/embeddings", self.api_embeddings),
            web.post("/api/pull", self.api_pull),
            web.post("/api/push", self.api_push),
            web.post("/api/create", self.api_create),
            web.post("/api/copy", self.api_copy),
            web.delete("/api/delete", self.api_delete),
            web.head("/api/blobs/{digest}", self.api_blob_exists),
            web.post("/api/blobs/{digest}", self.api_blob_push),
            web.get("/v1/models", self.v1_models),
            web.post("/v1/chat/completions", self.v1_chat),
            web.post("/v1/completions", self.v1_completions),
            web.post("/v1/embeddings", self.v1_embeddings),
        ]

    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def api_version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": self.version})

    async def api_tags(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [tags_entry(name) for name in self.models]})

    async def api_ps(self, request: web.Request) -> web.Response:
        running = []
        for name in self.models[:1]:
            entry = tags_entry(name)
            running.append(
                {
                    "name": name,
                    "model": name,
                    "size": entry["size"],
                    "digest": entry["digest"],
                    "details": entry["details"],
                    "expires_at": "2099-01-01T00:00:00Z",
                    "size_vram": entry["size"],
                }
            )
        return web.json_response({"models": running})

    async def api_show(self, request: web.Request) -> web.Response:
        body = await _body(request)
        name = _model_name(body)
        if name not in self.models:
            return _not_found(name)
        entry = tags_entry(name)
        return web.json_response(
            {
                "modelfile": f"FROM {name}\n",
                "parameters": 'stop "<|eot_id|>"',
                "template": "{{ .Prompt }}",
                "details": entry["details"],
                "model_info": {"general.architecture": entry["details"]["family"]},
                "capabilities": ["completion"],
                "modified_at": entry["modified_at"],
            }
        )

    async def api_chat(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        model = _model_name(body)
        if model not in self.models:
            return _not_found(model)
        if self.hang_chat:
            await self.wait_until_stopped()
        messages = body.get("messages") or []
        pieces = _limit(echo_pieces(last_user_text(messages)), body)
        done_reason = (
            "length" if len(pieces) < len(echo_pieces(last_user_text(messages))) else "stop"
        )
        stats = _stats(count_words(messages), len(pieces))

        def message(content: str) -> dict[str, Any]:
            return {"role": "assistant", "content": content}

        if body.get("stream", True) is False:
            return web.json_response(
                {
                    "model": model,
                    "created_at": _now(),
                    "message": message("".join(pieces)),
                    "done_reason": done_reason,
                    "done": True,
                    **stats,
                }
            )
        lines = [
            _line({"model": model, "created_at": _now(), "message": message(p), "done": False})
            for p in pieces
        ]
        lines.append(
            _line(
                {
                    "model": model,
                    "created_at": _now(),
                    "message": message(""),
                    "done_reason": done_reason,
                    "done": True,
                    **stats,
                }
            )
        )
        return await self._ndjson(request, lines, chat=True)

    async def api_generate(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        model = _model_name(body)
        if model not in self.models:
            return _not_found(model)
        if self.hang_chat:
            await self.wait_until_stopped()
        prompt = str(body.get("prompt", ""))
        full = echo_pieces(prompt)
        pieces = _limit(full, body)
        done_reason = "length" if len(pieces) < len(full) else "stop"
        final = {
            "model": model,
            "created_at": _now(),
            "response": "",
            "done": True,
            "done_reason": done_reason,
            "context": list(range(1, len(pieces) + 1)),
            **_stats(len(prompt.split()), len(pieces)),
        }
        if body.get("stream", True) is False:
            return web.json_response({**final, "response": "".join(pieces)})
        lines = [
            _line({"model": model, "created_at": _now(), "response": p, "done": False})
            for p in pieces
        ]
        lines.append(_line(final))
        return await self._ndjson(request, lines, chat=True)

    async def api_embed(self, request: web.Request) -> web.Response:
        body = await _body(request)
        model = _model_name(body)
        if model not in self.models:
            return _not_found(model)
        raw = body.get("input", "")
        inputs = raw if isinstance(raw, list) else [raw]
        return web.json_response(
            {
                "model": model,
                "embeddings": [embedding_of(str(text)) for text in inputs],
                "total_duration": 14_143_917,
                "load_duration": 1_019_500,
                "prompt_eval_count": sum(len(str(text).split()) for text in inputs),
            }
        )

    async def api_embeddings(self, request: web.Request) -> web.Response:
        body = await _body(request)
        model = _model_name(body)
        if model not in self.models:
            return _not_found(model)
        return web.json_response({"embedding": embedding_of(str(body.get("prompt", "")))})

    async def api_pull(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        model = _model_name(body)
        digest = "sha256:" + hashlib.sha256(model.encode()).hexdigest()
        total = 1000 * max(self.pull_steps, 1)
        lines = [_line({"status": "pulling manifest"})]
        for step in range(1, self.pull_steps + 1):
            lines.append(
                _line(
                    {
                        "status": f"pulling {digest[7:19]}",
                        "digest": digest,
                        "total": total,
                        "completed": step * total // self.pull_steps,
                    }
                )
            )
        lines += [
            _line({"status": "verifying sha256 digest"}),
            _line({"status": "writing manifest"}),
            _line({"status": "success"}),
        ]
        if model and model not in self.models:
            self.models.append(model)
        if body.get("stream", True) is False:
            return web.json_response({"status": "success"})
        return await self._ndjson(request, lines)

    async def api_push(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        model = _model_name(body)
        if model not in self.models:
            return _not_found(model)
        digest = tags_entry(model)["digest"]
        lines = [
            _line({"status": "retrieving manifest"}),
            _line({"status": "starting upload", "digest": f"sha256:{digest}", "total": 1000}),
            _line({"status": "pushing manifest"}),
            _line({"status": "success"}),
        ]
        if body.get("stream", True) is False:
            return web.json_response({"status": "success"})
        return await self._ndjson(request, lines)

    async def api_create(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        model = _model_name(body)
        source = body.get("from")
        if source and source not in self.models:
            return _not_found(str(source))
        if model and model not in self.models:
            self.models.append(model)
        lines = [
            _line({"status": "reading model metadata"}),
            _line({"status": "creating system layer"}),
            _line({"status": "writing manifest"}),
            _line({"status": "success"}),
        ]
        if body.get("stream", True) is False:
            return web.json_response({"status": "success"})
        return await self._ndjson(request, lines)

    async def api_copy(self, request: web.Request) -> web.Response:
        body = await _body(request)
        source, destination = str(body.get("source", "")), str(body.get("destination", ""))
        if source not in self.models:
            return _not_found(source)
        if destination and destination not in self.models:
            self.models.append(destination)
        return web.Response(status=200)

    async def api_delete(self, request: web.Request) -> web.Response:
        body = await _body(request)
        model = _model_name(body)
        if model not in self.models:
            return _not_found(model)
        self.models.remove(model)
        return web.Response(status=200)

    async def api_blob_exists(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if request.match_info["digest"] in self.blobs else 404)

    async def api_blob_push(self, request: web.Request) -> web.Response:
        digest = request.match_info["digest"]
        data = await request.read()
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            return web.json_response({"error": "digest mismatch"}, status=400)
        self.blobs[digest] = data
        return web.Response(status=201)

    # --- the OpenAI-compatible routes --------------------------------------------------

    async def v1_models(self, request: web.Request) -> web.Response:
        created = int(datetime(2025, 5, 1, 10, tzinfo=UTC).timestamp())  # tags' modified_at
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": _namespace(name)}
            for name in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def v1_chat(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        model = str(body.get("model") or "")
        if model not in self.models:
            return _openai_not_found(model)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _openai_error(400, "[] is too short - 'messages'")
        pieces = _limit_tokens(echo_pieces(last_user_text(messages)), body)
        head = _openai_head("chat.completion", model)
        usage = _usage(count_words(messages), len(pieces))
        if not body.get("stream"):
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(pieces)},
                "finish_reason": "stop",
            }
            return web.json_response({**head, "choices": [choice], "usage": usage})
        head["object"] = "chat.completion.chunk"
        events = [
            _sse(
                {
                    **head,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": piece},
                            "finish_reason": None,
                        }
                    ],
                }
            )
            for piece in pieces
        ]
        events.append(
            _sse(
                {
                    **head,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": "stop",
                        }
                    ],
                }
            )
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(_sse({**head, "choices": [], "usage": usage}))
        events.append(b"data: [DONE]\n\n")
        return await self.write_stream(
            request,
            web.StreamResponse(headers={"Content-Type": SSE}),
            events,
            delay=self.chunk_delay,
            drop_after=self.drop_after,
        )

    async def v1_completions(self, request: web.Request) -> web.Response:
        body = await _body(request)
        model = str(body.get("model") or "")
        if model not in self.models:
            return _openai_not_found(model)
        prompt = str(body.get("prompt", ""))
        pieces = _limit_tokens(echo_pieces(prompt), body)
        choice = {"text": "".join(pieces), "index": 0, "finish_reason": "stop"}
        return web.json_response(
            {
                **_openai_head("text_completion", model),
                "choices": [choice],
                "usage": _usage(len(prompt.split()), len(pieces)),
            }
        )

    async def v1_embeddings(self, request: web.Request) -> web.Response:
        body = await _body(request)
        model = str(body.get("model") or "")
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return _openai_error(400, "invalid input")
        if model not in self.models:
            return _openai_not_found(model)
        as_base64 = str(body.get("encoding_format", "")).lower() == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embedding_of(text)
            encoded: Any = float32_base64(vector) if as_base64 else vector
            data.append({"object": "embedding", "embedding": encoded, "index": index})
        tokens = sum(len(text.split()) for text in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _ndjson(
        self, request: web.Request, lines: list[bytes], *, chat: bool = False
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        return await self.write_stream(
            request,
            response,
            lines,
            delay=self.chunk_delay,
            drop_after=self.drop_after if chat else None,
        )


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # real Ollama answers such bodies with a 4xx too
        return {}
    return body if isinstance(body, dict) else {}


def _model_name(body: dict[str, Any]) -> str:
    # Ollama accepts `model`, and `name` on older clients
    return str(body.get("model") or body.get("name") or "")


def _namespace(name: str) -> str:
    """What Ollama's `/v1/models` calls the owner: the name's namespace (`library`)."""
    path = name.split(":")[0]
    return path.split("/")[-2] if "/" in path else "library"


def _openai_head(kind: str, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{random.randint(0, 999)}" if kind.startswith("chat") else "cmpl-1",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_ollama",
    }


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _limit_tokens(pieces: list[str], body: dict[str, Any]) -> list[str]:
    limit = body.get("max_tokens")
    return pieces[:limit] if isinstance(limit, int) and limit >= 0 else pieces


def _limit(pieces: list[str], body: dict[str, Any]) -> list[str]:
    options = body.get("options") or {}
    limit = options.get("num_predict") if isinstance(options, dict) else None
    if isinstance(limit, int) and limit >= 0:
        return pieces[:limit]
    return pieces


__all__ = ["OllamaFake", "embedding_of", "tags_entry"]
