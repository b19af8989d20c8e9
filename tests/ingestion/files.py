"""Real files built in the tests: hand-written PDFs, python-docx documents, zip tricks."""

from __future__ import annotations

import io
import struct
import zipfile

import docx
import pypdf


def pdf_bytes(pages: list[list[str]]) -> bytes:
    """A valid PDF whose pages show the given lines in Helvetica (text pypdf can extract)."""
    count = len(pages)
    page_ids = [4 + 2 * n for n in range(count)]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % i for i in page_ids), count),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    for page_id, lines in zip(page_ids, pages, strict=True):
        shown = b" T* ".join(b"(%s) Tj" % _pdf_string(line) for line in lines)
        stream = b"BT /F1 12 Tf 14 TL 72 720 Td " + shown + b" ET"
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    out = bytearray(b"%PDF-1.4\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref_at = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number]
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref_at)
    return bytes(out)


def _pdf_string(line: str) -> bytes:
    raw = line.encode("latin-1")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def encrypted_pdf_bytes(pages: list[list[str]], user_password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf_bytes(pages))))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes() -> bytes:
    """A Word document with a title, headings, paragraphs and a table with a merged cell."""
    document = docx.Document()
    document.core_properties.title = "Field guide"
    document.add_heading("Field guide", level=0)
    document.add_paragraph("Birds of the northern coast.")
    document.add_heading("Gulls", level=1)
    document.add_paragraph("Herring gulls nest on cliffs.")
    table = document.add_table(rows=3, cols=3)
    for row, values in enumerate([("Bird", "Wingspan", "Habitat"),
                                  ("Herring gull", "1.4 m", "Coast"),
                                  ("Kittiwake", "1.0 m", "Cliffs")]):  # fmt: skip
        for column, value in enumerate(values):
            table.cell(row, column).text = value
    merged = table.cell(2, 1).merge(table.cell(2, 2))
    merged.text = "Open sea"
    document.add_heading("Terns", level=2)
    document.add_paragraph("Arctic terns migrate furthest.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def with_declared_size(zip_blob: bytes, member: str, declared: int) -> bytes:
    """The same ZIP, its central directory claiming `member` inflates to `declared` bytes."""
    blob = bytearray(zip_blob)
    at = 0
    while (at := blob.find(b"PK\x01\x02", at)) != -1:
        name_length = struct.unpack_from("<H", blob, at + 28)[0]
        if blob[at + 46 : at + 46 + name_length].decode() == member:
            struct.pack_into("<I", blob, at + 24, declared)
            return bytes(blob)
        at += 4
    raise AssertionError(f"{member} not in the archive")


def zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()
