"""The seam the job consumer calls: a stored file's bytes in, chunks ready to embed out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ingestion.chunking import ChunkingOptions, chunk_text
from ingestion.documents import ProcessedFile
from ingestion.extraction import ExtractionLimits, extract_text


def process_file(
    blob: bytes,
    filename: str,
    content_type: str,
    *,
    limits: ExtractionLimits,
    chunking: ChunkingOptions,
    on_extracted: Callable[[], None] | None = None,
) -> ProcessedFile:
    """Extract text and chunk it; raises `ExtractionError` with a reason for the uploader.

    `on_extracted` is called between the two (the child tells its worker: stage chunking).
    """
    document = extract_text(blob, filename, content_type, limits)
    if on_extracted is not None:
        on_extracted()
    return ProcessedFile(
        kind=document.kind,
        chunks=chunk_text(document, chunking),
        characters=len(document.text),
        metadata=document.metadata,
        warnings=document.warnings,
        text=document.text,
    )


async def process_file_in_thread(
    blob: bytes,
    filename: str,
    content_type: str,
    *,
    limits: ExtractionLimits,
    chunking: ChunkingOptions,
) -> ProcessedFile:
    """`process_file` off the event loop: parsing a PDF can take seconds of CPU."""
    return await asyncio.to_thread(
        process_file, blob, filename, content_type, limits=limits, chunking=chunking
    )
