"""The values the text pipeline passes along: extracted text, its spans, and chunks."""

from __future__ import annotations

from typing import Literal

import msgspec

# Chunk and span metadata stay flat and JSON-friendly: they end up in vector payloads.
MetaValue = str | int | bool | list[str]
Metadata = dict[str, MetaValue]

Kind = Literal["text", "markdown", "csv", "json", "html", "pdf", "docx"]


class Span(msgspec.Struct, frozen=True, kw_only=True):
    """A region of the extracted text with its own metadata (e.g. one PDF page)."""

    start: int
    end: int
    metadata: Metadata = {}


class ExtractedText(msgspec.Struct, frozen=True, kw_only=True):
    """A file's text, what kind it was read as, and what was noticed on the way."""

    text: str
    kind: Kind
    # True when headings are written as Markdown ATX lines ("## Title"), so chunks can
    # carry their heading path (Markdown itself, HTML and DOCX headings).
    structured: bool = False
    metadata: Metadata = {}
    spans: list[Span] = []
    # Things the uploader may want to know, e.g. a lossy decode or a truncation.
    warnings: list[str] = []


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    """One piece of a document, ready to embed.

    `start`/`end` index the extracted text (`text[start:end]`); `text` is that span,
    preceded by its heading path ("# Guide > ## Install") when the chunk starts below
    a heading it does not contain, so no chunk reads as orphaned text.
    """

    index: int
    text: str
    start: int
    end: int
    metadata: Metadata = {}


class ProcessedFile(msgspec.Struct, frozen=True, kw_only=True):
    """The result of the text pipeline for one file."""

    kind: Kind
    chunks: list[Chunk]
    characters: int
    metadata: Metadata = {}
    warnings: list[str] = []
    text: str = ""  # the extracted text (kept beside the file for "data/content")
