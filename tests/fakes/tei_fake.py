"""A reranker that speaks text-embeddings-inference's `POST /rerank` (and Infinity's).

No cross-encoder ships on the registries, so this fake scores deterministically: the
share of the query's words found in each text. It validates bodies as TEI does (422 on
a missing `query`/`texts`, 413 past its batch size) and answers in TEI's shape, a list of
`{"index", "score"}` best first (`"text"` too with `return_text`). `POST
/infinity/rerank` takes Infinity's `{"query", "documents", "top_n"}` and answers
`{"results": [{"index", "relevance_score"}]}`. `delay` makes every answer that late.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeBackend

WORD = re.compile(r"\w+")
MAX_BATCH = 64  # TEI's --max-client-batch-size default is 32; any bound will do


def overlap(query: str, text: str) -> float:
    wanted = set(WORD.findall(query.lower()))
    found = set(WORD.findall(text.lower()))
    return len(wanted & found) / len(wanted) if wanted else 0.0


def _ranked(query: str, texts: list[str]) -> list[tuple[int, float]]:
    scores = [(i, overlap(query, text)) for i, text in enumerate(texts)]
    return sorted(scores, key=lambda pair: (-pair[1], pair[0]))


@dataclass
class TeiFake(FakeBackend):
    delay: float = 0.0
    status: int = 200

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/rerank", self.tei), web.post("/infinity/rerank", self.infinity)]

    async def _hold(self) -> web.Response | None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.json_response(
                {"error": "overloaded", "error_type": "overloaded"}, status=self.status
            )
        return None

    async def tei(self, request: web.Request) -> web.Response:
        held = await self._hold()
        if held is not None:
            return held
        body: Any = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _error(422, "missing field `query`")
        texts = body.get("texts")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return _error(422, "missing field `texts`")
        if not texts:
            return _error(422, "`texts` cannot be empty")
        if len(texts) > MAX_BATCH:
            return _error(413, f"batch size {len(texts)} > maximum allowed batch size {MAX_BATCH}")
        answer = []
        for index, score in _ranked(body["query"], texts):
            item: dict[str, Any] = {"index": index, "score": score}
            if body.get("return_text"):
                item["text"] = texts[index]
            answer.append(item)
        return web.json_response(answer)

    async def infinity(self, request: web.Request) -> web.Response:
        held = await self._hold()
        if held is not None:
            return held
        body: Any = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _error(422, "query: Field required")
        documents = body.get("documents")
        if not isinstance(documents, list) or not documents:
            return _error(422, "documents: Field required")
        ranked = _ranked(body["query"], documents)[: body.get("top_n") or len(documents)]
        results = [{"index": i, "relevance_score": s} for i, s in ranked]
        return web.json_response(
            {"object": "rerank", "results": results, "model": body.get("model", "fake")}
        )


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "error_type": "validation"}, status=status)
