"""`ragway chat`: stream an answer to the terminal, then list the sources it used."""

from __future__ import annotations

from typing import Any

import click

from ragway_cli.client import Api
from ragway_cli.context import Context, pass_context
from ragway_cli.errors import CliError
from ragway_cli.resources import items_of, knowledge_id

SNIPPET_CHARS = 80


async def pick_model(api: Api, model: str | None) -> str:
    if model:
        return model
    listed = items_of(await api.call("GET", "/api/models"))
    if not listed:
        raise CliError("No models available on this ragway: configure a backend")
    return str(listed[0]["id"])


async def ask(
    api: Api,
    question: str,
    model: str | None,
    file_ids: list[str],
    knowledge: list[str],
    stream: bool,
) -> list[dict[str, Any]]:
    """Print the answer as it arrives; return the `sources` the server sent."""
    refs = [{"type": "file", "id": file_id} for file_id in file_ids]
    for name_or_id in knowledge:
        refs.append({"type": "collection", "id": await knowledge_id(api, name_or_id)})
    body: dict[str, Any] = {
        "model": await pick_model(api, model),
        "messages": [{"role": "user", "content": question}],
        "stream": stream,
    }
    if refs:
        body["files"] = refs
    if not stream:
        reply = await api.call("POST", "/api/chat/completions", json=body)
        click.echo(_message_text(reply))
        return list(reply.get("sources") or [])
    sources: list[dict[str, Any]] = []
    async for event in api.events("POST", "/api/chat/completions", json=body):
        if not isinstance(event, dict):
            continue
        if "sources" in event and "choices" not in event:
            sources = list(event["sources"] or [])
        if "error" in event:
            error = event["error"]
            message = error.get("message") if isinstance(error, dict) else error
            click.echo()
            raise CliError(f"The model failed mid-answer: {message}")
        for choice in event.get("choices") or []:
            piece = (choice.get("delta") or choice.get("message") or {}).get("content")
            if piece:
                click.echo(piece, nl=False)
    click.echo()
    return sources


def _message_text(reply: Any) -> str:
    try:
        return str(reply["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError):
        raise CliError("ragway answered without a message") from None


def citation(meta: dict[str, Any]) -> str:
    """Where a chunk lies in its file: its pages (PDF), its heading path (Markdown, HTML,
    DOCX) and its characters in the extracted text (`files/{id}/data/content`)."""
    parts: list[str] = []
    page, last = meta.get("page"), meta.get("page_end")
    if isinstance(page, int):
        if isinstance(last, int) and last != page:
            parts.append(f"pp. {page + 1}-{last + 1}")
        else:
            parts.append(f"p. {meta.get('page_label') or page + 1}")
    headings = meta.get("headings")
    if isinstance(headings, list) and headings:
        parts.append(" > ".join(str(h).lstrip("#").strip() for h in headings))
    start, end = meta.get("start_index"), meta.get("end_index")
    if isinstance(start, int) and isinstance(end, int):
        parts.append(f"chars {start}-{end}")
    return " · ".join(parts)


def source_lines(sources: list[dict[str, Any]]) -> list[str]:
    """One line per cited chunk, numbered across sources as the prompt numbered them,
    and under it where the chunk lies in its file (`citation`) when the server says."""
    lines: list[str] = []
    number = 0
    for entry in sources:
        source = entry.get("source") or {}
        documents = entry.get("document") or []
        metadatas = entry.get("metadata") or []
        for index, text in enumerate(documents):
            number += 1
            meta = metadatas[index] if index < len(metadatas) else {}
            name = meta.get("name") or source.get("name") or meta.get("source") or "?"
            snippet = " ".join(str(text).split())
            if len(snippet) > SNIPPET_CHARS:
                snippet = snippet[: SNIPPET_CHARS - 1] + "…"
            lines.append(f"[{number}] {name}: {snippet}")
            where = citation(meta)
            if where:
                lines.append(f"    {where}")
    return lines


@click.command()
@click.argument("question")
@click.option("-m", "--model", envvar="RAGWAY_MODEL", help="Model id (default: the first listed).")
@click.option("--file", "file_ids", multiple=True, help="Use this file (id); repeatable.")
@click.option(
    "--knowledge", multiple=True, help="Use this knowledge collection (id or name); repeatable."
)
@click.option("--no-stream", is_flag=True, help="Wait for the whole answer.")
@pass_context
def chat(
    ctx: Context,
    question: str,
    model: str | None,
    file_ids: tuple[str, ...],
    knowledge: tuple[str, ...],
    no_stream: bool,
) -> None:
    """Ask QUESTION; the answer streams in, then its sources are listed."""
    sources = ctx.run(
        lambda api: ask(api, question, model, list(file_ids), list(knowledge), not no_stream)
    )
    lines = source_lines(sources)
    if lines:
        click.echo("\nSources:")
        for line in lines:
            click.echo(f"  {line}")
