"""Hostile uploads cost bounded memory and time, and fail at once with a reason.

The finding: a 36 KiB DOCX whose XML stays under the 200 MiB unpacked cap (millions of
empty paragraphs) took ~940 MB RSS and 50 s of CPU; JSON and text were decoded whole
before any cap; extraction had no wall-clock limit; each failure of that kind was
retried as if transient. The DOCX here is built the same way (~50 KiB, 6 million
`<w:p/>`, 34 MiB of XML): it took 64 s and 1.3 GB on the code before these limits.
"""

from __future__ import annotations

import io
import uuid
import zipfile

import aiohttp
import pytest

from gateway.app import Settings as GatewaySettings
from gateway.app import serve as serve_gateway
from ingestion.child import ChildLimits, process_file_in_child
from ingestion.chunking import ChunkingOptions
from ingestion.errors import ExtractionError
from ingestion.extraction import ExtractionLimits, extract_text
from ingestion.extraction.textual import decode_text, read_json
from tests.e2e.rag_helpers import settled
from tests.security.conftest import upload
from tests.support.stack import Account, RagServices, Stack

pytestmark = pytest.mark.security

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    f'<Override PartName="/word/document.xml" ContentType="{DOCX}.main+xml"/></Types>'
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Target="word/document.xml" Type="http://schemas.openxmlformats'
    '.org/officeDocument/2006/relationships/officeDocument"/></Relationships>'
)
_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>{doctype}'
    '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    "<w:body>"
)


def docx(paragraphs: int, *, doctype: str = "") -> bytes:
    """A minimal valid DOCX: `paragraphs` empty paragraphs, then one that says 'end'."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _RELS)
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            part.write(_HEAD.format(doctype=doctype).encode())
            block = b"<w:p/>" * 100_000
            for _ in range(paragraphs // 100_000):
                part.write(block)
            part.write(b"<w:p><w:r><w:t>end</w:t></w:r></w:p></w:body></w:document>")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hostile_docx() -> bytes:
    blob = docx(6_000_000)
    assert len(blob) < 64 * 1024  # small on the wire
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:  # and under the unpacked-size cap
        assert sum(m.file_size for m in archive.infolist()) < 200 * 1024 * 1024
    return blob


def test_the_hostile_docx_is_refused_before_any_parse(hostile_docx: bytes) -> None:
    with pytest.raises(ExtractionError) as refused:
        extract_text(hostile_docx, "report.docx", DOCX, ExtractionLimits())
    assert refused.value.code == "too_large"
    assert "XML tags" in refused.value.reason


def test_a_docx_with_a_document_type_declaration_is_refused() -> None:
    blob = docx(0, doctype='<!DOCTYPE w:document [<!ENTITY a "aaaaaaaaaa">]>')
    with pytest.raises(ExtractionError) as refused:
        extract_text(blob, "report.docx", DOCX, ExtractionLimits())
    assert "DTD" in refused.value.reason


def test_a_small_docx_still_reads() -> None:
    assert extract_text(docx(100_000), "r.docx", DOCX, ExtractionLimits()).text == "end"


def test_text_is_decoded_only_as_far_as_the_cap_keeps() -> None:
    decoded = decode_text(("é" * 1_000_000).encode(), None, max_chars=1000)
    assert decoded.cut and 1000 < len(decoded.text) <= 4004
    assert decoded.encoding == "utf-8" and decoded.warning is None  # no broken character


def test_json_over_its_cap_is_read_as_text_without_decoding_it() -> None:
    blob = b"[" + b"0," * 100_000 + b"0]"
    read = read_json(blob, None, ExtractionLimits(max_json_bytes=1024))
    assert read.text.startswith("[0,0,0")  # as sent, not pretty-printed element by element
    assert any("read as plain text" in warning for warning in read.warnings)


async def test_extraction_that_outgrows_its_memory_is_stopped_with_a_reason(
    hostile_docx: bytes,
) -> None:
    unbounded = ExtractionLimits(max_docx_xml_tags=10**9)  # let the parser try
    with pytest.raises(ExtractionError) as stopped:
        await process_file_in_child(
            hostile_docx,
            "report.docx",
            DOCX,
            limits=unbounded,
            chunking=ChunkingOptions(),
            child=ChildLimits(memory_bytes=400 * 1024 * 1024, timeout_seconds=600),
        )
    assert "400 MiB" in stopped.value.reason


async def test_extraction_that_runs_too_long_is_stopped_with_a_reason(
    hostile_docx: bytes,
) -> None:
    unbounded = ExtractionLimits(max_docx_xml_tags=10**9)
    with pytest.raises(ExtractionError) as stopped:
        await process_file_in_child(
            hostile_docx,
            "report.docx",
            DOCX,
            limits=unbounded,
            chunking=ChunkingOptions(),
            child=ChildLimits(timeout_seconds=1),
        )
    assert "longer than 1 s" in stopped.value.reason


async def test_a_hostile_upload_fails_on_its_first_attempt_with_the_reason(
    stack: Stack, rag: RagServices, user: Account, hostile_docx: bytes
) -> None:
    retried = rag.ingestion.jobs.retried
    record = await upload(stack, user, hostile_docx, "report.docx", DOCX)
    state = await settled(stack, user, record["id"])
    assert state["status"] == "failed", state
    status, body = await stack.call("GET", f"/api/v1/files/{record['id']}", headers=user.key_auth)
    assert status == 200
    error = body["data"]["error"]
    assert "XML tags" in error and "attempts" not in error, error
    assert rag.ingestion.jobs.retried == retried


async def test_uploads_stop_at_the_users_storage_quota(
    stack: Stack, rag: RagServices, stack_nats_url: str
) -> None:
    settings = GatewaySettings(nats_url=stack_nats_url, port=0, storage_quota_mb=1)
    async with serve_gateway(settings) as gateway:
        small = Stack(url=gateway.url, http=stack.http, gateway=gateway)
        small._admin = await stack.admin()
        owner = await stack.with_key(await stack.signup())
        body = f"# Notes {uuid.uuid4().hex}\n\n".encode() + b"words and more words\n" * 30_000
        assert 600 * 1024 < len(body) < 1024 * 1024
        first = await upload(small, owner, body, "first.md")
        async with stack.http.post(
            small.url + "/api/v1/files/",
            headers=owner.key_auth,
            data=_form(body, "second.md"),
        ) as reply:
            assert reply.status == 507
            detail = (await reply.json())["detail"]
        assert "quota of 1 MiB" in detail, detail
        # the refused upload left nothing behind; deleting a file makes room again
        status, listing = await small.call("GET", "/api/v1/files/", headers=owner.key_auth)
        assert [f["id"] for f in listing] == [first["id"]]
        status, _ = await small.call(
            "DELETE", f"/api/v1/files/{first['id']}", headers=owner.key_auth
        )
        assert status == 200
        await upload(small, owner, body, "again.md")
        # other users have their own quota
        other = await stack.with_key(await stack.signup())
        await upload(small, other, body, "theirs.md")


def _form(content: bytes, name: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("file", content, filename=name, content_type="text/markdown")
    return data
