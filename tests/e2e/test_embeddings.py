"""`POST /api/embeddings` and `/api/v1/embeddings` over HTTP: ragway's own model (the
retrieval service's), listed in `/api/models`; a backend's model forwarded; OpenAI's
shapes, float and base64; bounds and refusals with a reason."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from tests.fakes.ollama_fake import embedding_of
from tests.support.stack import Account, Stack

pytestmark = pytest.mark.usefixtures("rag")

LOCAL = "all-minilm-l6-v2"
DOCS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "A recipe for bread needs flour, water, salt and yeast.",
]


async def embed(
    stack: Stack, user: Account, body: dict[str, Any], path: str = "/api/embeddings"
) -> tuple[int, Any]:
    return await stack.call("POST", path, headers=user.key_auth, json=body)


def vectors(reply: dict[str, Any]) -> np.ndarray:
    """The reply's vectors in index order, floats or base64 alike."""
    rows = []
    for item in sorted(reply["data"], key=lambda item: item["index"]):
        value = item["embedding"]
        if isinstance(value, str):
            value = np.frombuffer(base64.b64decode(value), "<f4")
        rows.append(np.asarray(value, dtype=np.float32))
    return np.array(rows)


async def test_ragways_own_model_is_listed_as_an_embedding_model(
    stack: Stack, user: Account
) -> None:
    status, listing = await stack.call("GET", "/api/models", headers=user.key_auth)
    assert status == 200
    by_id = {model["id"]: model for model in listing["data"]}
    local = by_id[LOCAL]
    assert local["embedding"] == {"dimensions": 384, "max_input_tokens": 256}
    assert (local["object"], local["owned_by"], local["connection_type"]) == (
        "model",
        "openai",
        "local",
    )
    assert listing["data"][-1]["id"] == LOCAL  # after the chat models
    assert all("embedding" not in model for model in listing["data"][:-1])


async def test_texts_are_embedded_in_openais_shape_with_usage(stack: Stack, user: Account) -> None:
    status, reply = await embed(stack, user, {"model": LOCAL, "input": DOCS})
    assert status == 200, reply
    assert reply["object"] == "list" and reply["model"] == LOCAL
    assert [(item["object"], item["index"]) for item in reply["data"]] == [
        ("embedding", 0),
        ("embedding", 1),
        ("embedding", 2),
    ]
    found = vectors(reply)
    assert found.shape == (3, 384)
    assert np.allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-4)
    status, question = await embed(stack, user, {"model": LOCAL, "input": "how is bread made"})
    assert status == 200
    assert int(np.argmax(found @ vectors(question)[0])) == 2
    # the model's own tokenizer: "[CLS] how is bread made [SEP]"
    assert question["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    assert reply["usage"]["prompt_tokens"] > 3 * 10


async def test_base64_carries_the_same_float32_vectors_and_batches_keep_the_order(
    stack: Stack, user: Account
) -> None:
    # more texts than one batch (32): they come back in order, each its own vector
    texts = [f"sentence number {i} about topic {i % 7}" for i in range(70)]
    status, floats = await embed(stack, user, {"model": LOCAL, "input": texts})
    assert status == 200, floats
    status, packed = await embed(
        stack,
        user,
        {"model": LOCAL, "input": texts, "encoding_format": "base64"},
        "/api/v1/embeddings",
    )
    assert status == 200, packed
    assert all(isinstance(item["embedding"], str) for item in packed["data"])
    assert np.array_equal(vectors(floats), vectors(packed))
    assert [item["index"] for item in packed["data"]] == list(range(70))
    status, alone = await embed(stack, user, {"model": LOCAL, "input": texts[45]})
    assert np.array_equal(vectors(alone)[0], vectors(floats)[45])
    assert floats["usage"] == packed["usage"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"input": [[101, 2023], [2003]]}, 400, "token ids"),
        ({"input": [101, 2023, 102]}, 400, "token ids"),
        ({"input": []}, 400, "empty"),
        ({"input": ["fine", ""]}, 400, "input[1]"),
        ({"input": "x", "dimensions": 128}, 400, "384 dimensions"),
        ({"input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"input": ["x"] * 2049}, 400, "at most 2048"),
        ({"input": "x" * 1_000_001}, 413, "at most 1000000"),
        ({"input": "x", "model": "no-such-model"}, 404, "no-such-model"),
    ],
)
async def test_bad_requests_are_refused_with_a_reason(
    stack: Stack, user: Account, body: dict[str, Any], status: int, reason: str
) -> None:
    got, reply = await embed(stack, user, {"model": LOCAL, **body})
    assert got == status, reply
    assert reason in reply["detail"]


async def test_the_models_own_dimension_count_is_accepted(stack: Stack, user: Account) -> None:
    status, reply = await embed(stack, user, {"model": LOCAL, "input": "x", "dimensions": 384})
    assert status == 200, reply
    assert vectors(reply).shape == (1, 384)


@pytest.mark.parametrize(
    ("model", "backend_path"),
    [("gpt-fake", "/v1/embeddings"), ("llama3.2:latest", "/api/embed")],
)
async def test_a_backends_model_is_forwarded_and_answered_in_openais_shape(
    stack: Stack,
    user: Account,
    backend_fakes: tuple[Any, Any],
    model: str,
    backend_path: str,
) -> None:
    openai_fake, ollama_fake = backend_fakes
    fake = openai_fake if backend_path.startswith("/v1") else ollama_fake
    status, reply = await embed(
        stack,
        user,
        {"model": model, "input": ["one", "two words"], "encoding_format": "base64"},
    )
    assert status == 200, reply
    assert reply["model"] == model and reply["usage"]["prompt_tokens"] == 3
    expected = np.array([embedding_of("one"), embedding_of("two words")], dtype=np.float32)
    assert np.array_equal(vectors(reply), expected)
    assert fake.last(backend_path).json["input"] == ["one", "two words"]


async def test_chatting_with_the_embedding_model_says_what_it_is_for(
    stack: Stack, user: Account
) -> None:
    status, reply = await stack.call(
        "POST",
        "/api/chat/completions",
        headers=user.key_auth,
        json={"model": LOCAL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 400
    assert reply["detail"] == f"'{LOCAL}' is an embedding model: use POST /api/embeddings"
