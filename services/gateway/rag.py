"""RAG in chat: ask retrieval for the files' best chunks, number them, write the prompt.

The prompt goes in front of the last user message: a task line, short guidelines, then
`<context>` with one `<source id="n" name="...">` per chunk, numbered 1..n in the order
of `sources` (one entry per `files` item, its chunks best first), so `[n]` in an answer
points at the n-th document across `sources`.

A file still being embedded is waited for a bounded time; after that it is searched as
it is (BM25 over every chunk, dense similarity over the chunks embedded so far) and its
`sources` entry names it under `indexing`, so a partial answer is never a silent one.
"""

from __future__ import annotations

import html
from typing import Any

import msgspec

from common.bus import Bus
from common.errors import invalid
from contracts import subjects
from contracts.auth import Principal
from contracts.chat import FileRef
from contracts.retrieval import (
    HitGroup,
    PartialFile,
    RetrievalQuery,
    RetrievalResult,
    ScopeItem,
    SearchMode,
)
from gateway import scopes

PROMPT_HEAD = """### Task
Answer the user's query below using the context provided.

### Guidelines
- Base the answer on the context. If the context does not hold the answer, say that you
  do not know; do not make one up.
- Answer in the language of the user's query.
- When a statement comes from a source that has an id, cite it as [n] with that id, e.g. [1].
- Do not include XML tags in the answer.

"""


class Source(msgspec.Struct, kw_only=True):
    type: str
    id: str
    name: str


class SourceEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One `files` item's hits, as Open WebUI's `sources` carry them.

    `indexing` (ragway's, only when not empty) lists the item's files that were searched
    before their dense embedding finished, with how many chunks had a dense vector.
    """

    source: Source
    document: list[str]
    metadata: list[dict[str, Any]]
    distances: list[float]
    indexing: list[PartialFile] = []


def scope_items(files: list[FileRef]) -> list[ScopeItem]:
    return [
        ScopeItem(type=ref.type, id=ref.id, full_context=ref.context == "full", filter=ref.filter)
        for ref in files
    ]


async def retrieve(
    bus: Bus,
    principal: Principal,
    query: str,
    items: list[ScopeItem],
    *,
    k: int,
    wait_seconds: float,
    reply_seconds: float,
    mode: SearchMode = "hybrid",
    complete_wait_seconds: float | None = None,
) -> RetrievalResult:
    """RETRIEVAL_QUERY; its errors (not_found, failed file, still processing) propagate.

    `wait_seconds` bounds the wait for files to become searchable at all,
    `complete_wait_seconds` the wait for a keyword-searchable file to finish embedding.
    A scoped API key reaches only its collections (and their files): 403 otherwise.
    """
    await scopes.require_items(bus, principal, items, reply_seconds)
    request = RetrievalQuery(
        principal=principal,
        query=query,
        items=items,
        k=k,
        mode=mode,
        wait_seconds=wait_seconds,
        complete_wait_seconds=complete_wait_seconds,
    )
    # the service may wait for files that long before it searches
    return await bus.call(subjects.RETRIEVAL_QUERY, request, timeout=reply_seconds + wait_seconds)


def sources_of(groups: list[HitGroup]) -> list[SourceEntry]:
    return [
        SourceEntry(
            source=Source(type=group.type, id=group.id, name=group.name),
            document=[hit.text for hit in group.hits],
            metadata=[hit.metadata for hit in group.hits],
            distances=[hit.score for hit in group.hits],
            indexing=group.partial,
        )
        for group in groups
    ]


def _neutralized(text: str) -> str:
    """Chunk text cannot close the tags that frame it."""
    return text.replace("</source>", "</ source>").replace("</context>", "</ context>")


def rag_prompt(sources: list[SourceEntry]) -> str:
    lines = [PROMPT_HEAD, "<context>\n"]
    number = 0
    for entry in sources:
        for text, meta in zip(entry.document, entry.metadata, strict=True):
            number += 1
            name = html.escape(str(meta.get("name") or entry.source.name), quote=True)
            lines.append(f'<source id="{number}" name="{name}">{_neutralized(text)}</source>\n')
    lines.append("</context>\n\n")
    return "".join(lines)


def last_user_index(messages: list[dict[str, Any]]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    raise invalid("RAG needs a user message to answer: `messages` has none")


def text_of(content: Any) -> str:
    """A message's text: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def with_prompt(content: Any, prompt: str) -> Any:
    """`content` with `prompt` in front of its text (strings and content-part lists)."""
    if isinstance(content, list):
        parts = list(content)
        for index, part in enumerate(parts):
            if isinstance(part, dict) and part.get("type") == "text":
                parts[index] = {**part, "text": prompt + str(part.get("text", ""))}
                return parts
        return [{"type": "text", "text": prompt.rstrip()}, *parts]
    return prompt + (content if isinstance(content, str) else "")


def user_query(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    query = text_of(messages[last_user_index(messages)].get("content")).strip()
    if not query:
        raise invalid("RAG needs a question: the last user message has no text")
    return query


def rewrite(body: dict[str, Any], sources: list[SourceEntry]) -> dict[str, Any]:
    """The request to forward: the prompt in front of the last user message, no `files`."""
    messages = [dict(message) for message in body["messages"]]
    index = last_user_index(messages)
    messages[index]["content"] = with_prompt(messages[index].get("content"), rag_prompt(sources))
    rewritten = {key: value for key, value in body.items() if key != "files"}
    rewritten["messages"] = messages
    return rewritten
