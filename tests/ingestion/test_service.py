"""The running service: nats.micro discovery, settings, and the file pipeline seam."""

from __future__ import annotations

import io
import json
import time

import docx
import msgspec
import pytest
from nats.aio.client import Client

from common.settings import load_settings
from contracts import subjects
from ingestion.app import Settings, serve
from ingestion.chunking import ChunkingOptions
from ingestion.errors import ExtractionError
from ingestion.extraction import ExtractionLimits
from ingestion.pipeline import process_file
from tests.ingestion.files import pdf_bytes
from tests.ingestion.test_chunking import prose


async def test_the_service_answers_ping_and_processes_files(settings: Settings, nc: Client) -> None:
    settings = msgspec.structs.replace(settings, chunk_size=200, chunk_overlap=20)
    async with serve(settings) as ingestion:
        reply = await nc.request(subjects.ping_subject(subjects.INGESTION_SERVICE), b"", timeout=2)
        assert json.loads(reply.data)["name"] == "ingestion"

        pages = [[f"Page {n} says the tide turns at {n} o'clock."] for n in range(1, 4)]
        processed = await ingestion.process_file(pdf_bytes(pages), "tides.pdf", "application/pdf")
        assert processed.kind == "pdf"
        assert processed.metadata["pages"] == 3
        assert [c.metadata["page"] for c in processed.chunks] == [0]  # all fits in one chunk

        with pytest.raises(ExtractionError) as refused:
            await ingestion.process_file(b"not a pdf", "fake.pdf", "application/pdf")
        assert refused.value.code == "invalid"


def test_settings_accept_open_webui_names_and_refuse_unworkable_chunking() -> None:
    settings = load_settings(Settings, {"CHUNK_SIZE": "500", "RAGWAY_CHUNK_OVERLAP": "50"})
    assert settings.chunking() == ChunkingOptions(chunk_size=500, chunk_overlap=50)
    with pytest.raises(SystemExit, match="chunk_overlap"):
        load_settings(Settings, {"RAGWAY_CHUNK_OVERLAP": "900"})
    with pytest.raises(SystemExit, match="max_pdf_pages"):
        load_settings(Settings, {"RAGWAY_MAX_PDF_PAGES": "many"})


def test_a_megabyte_of_text_is_extracted_and_chunked_in_well_under_two_seconds() -> None:
    text = "# Handbook\n\n" + "\n\n".join(f"## Part {n}\n\n{prose(n, 8)}" for n in range(1, 450))
    blob = text.encode()
    assert len(blob) > 1_000_000
    for filename in ("handbook.md", "handbook.txt"):
        started = time.perf_counter()
        processed = process_file(
            blob, filename, "", limits=ExtractionLimits(), chunking=ChunkingOptions()
        )
        elapsed = time.perf_counter() - started
        assert len(processed.chunks) > 1000
        assert elapsed < 2.0, f"{filename}: {elapsed:.2f} s"


def test_a_long_word_document_is_read_in_linear_time() -> None:
    # python-docx's Paragraph.style rescans every style per call: 2,000 paragraphs took ~6 s.
    document = docx.Document()
    for n in range(2000):
        document.add_paragraph(f"Paragraph {n} about tides and moons.")
    out = io.BytesIO()
    document.save(out)
    started = time.perf_counter()
    processed = process_file(
        out.getvalue(), "long.docx", "", limits=ExtractionLimits(), chunking=ChunkingOptions()
    )
    assert time.perf_counter() - started < 3.0
    assert processed.characters > 70_000
