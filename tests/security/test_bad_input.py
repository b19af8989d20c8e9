"""Bad input: each is a 4xx with a message, fast, damages no state, and the next normal
request works. Documents that cannot be read end `failed` with a reason.

Size limits are checked on a gateway of this module's own with 1 MiB limits (same NATS,
same services), so nothing large has to travel.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from contracts import subjects
from gateway.app import Settings as GatewaySettings
from gateway.app import serve as serve_gateway
from tests.e2e.rag_helpers import settled
from tests.security.conftest import upload
from tests.support.nats import SecuredNats
from tests.support.stack import Account, RagServices, Stack

pytestmark = pytest.mark.security

MIB = 1024 * 1024
CHAT = "/api/chat/completions"
ASK = [{"role": "user", "content": "hello"}]
BOUNDARY = "ragwayboundary42"


@pytest.fixture(scope="module")
async def small(stack: Stack, stack_nats: SecuredNats) -> AsyncIterator[Stack]:
    settings = GatewaySettings(
        **stack_nats.login(subjects.GATEWAY_SERVICE), port=0, max_body_mb=1, file_max_size_mb=1
    )
    async with serve_gateway(settings) as handle:
        other = Stack(url=handle.url, http=stack.http, gateway=handle)
        other._admin = await stack.admin()
        yield other


async def send(
    stack: Stack, account: Account | None, path: str, body: bytes, content_type: str
) -> tuple[int, Any, float]:
    """POST raw bytes: status, JSON body (or None), seconds taken."""
    headers = {"Content-Type": content_type}
    if account is not None:
        headers.update(account.key_auth)
    started = time.monotonic()
    async with stack.http.post(stack.url + path, data=body, headers=headers) as reply:
        text = await reply.text()
        parsed = await reply.json() if reply.content_type == "application/json" else text
        return reply.status, parsed, time.monotonic() - started


async def state_of(stack: Stack, account: Account) -> dict[str, Any]:
    seen = {}
    for name in ("files", "knowledge", "chats"):
        status, body = await stack.call("GET", f"/api/v1/{name}/", headers=account.key_auth)
        assert status == 200, (name, body)
        seen[name] = body
    return seen


async def still_works(stack: Stack, account: Account) -> None:
    status, reply = await stack.call(
        "POST", CHAT, headers=account.key_auth, json={"model": "gpt-fake", "messages": ASK}
    )
    assert status == 200, reply
    assert reply["choices"][0]["message"]["content"]


@pytest.fixture(autouse=True)
def _with_rag(rag: RagServices) -> None:
    """Files, knowledge and their listings need retrieval and ingestion running."""


def multipart(name: str, content: bytes, extra: bytes = b"") -> bytes:
    """A multipart body made by hand, so the filename goes out byte for byte."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: text/markdown\r\n\r\n"
    ).encode("utf-8", errors="surrogateescape")
    return head + content + b"\r\n" + extra + f"--{BOUNDARY}--\r\n".encode()


def assert_refused(status: int, body: Any, expected: int | tuple[int, ...]) -> None:
    allowed = (expected,) if isinstance(expected, int) else expected
    assert status in allowed, (status, body)
    assert isinstance(body, dict) and isinstance(body.get("detail"), str) and body["detail"]


async def test_oversized_bodies_and_uploads_are_413_and_store_nothing(
    small: Stack, user: Account
) -> None:
    before = await state_of(small, user)
    padding = "x" * (2 * MIB)
    big_json = b'{"model":"gpt-fake","messages":[{"role":"user","content":"' + padding.encode()
    big_json += b'"}]}'
    status, body, _ = await send(small, user, CHAT, big_json, "application/json")
    assert_refused(status, body, 413)
    status, body, _ = await send(
        small, user, "/api/v1/files/", multipart("big.md", b"a" * (2 * MIB)), _form()
    )
    assert_refused(status, body, 413)

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: found while streaming
        whole = multipart("big.md", b"b" * (3 * MIB // 2))
        for start in range(0, len(whole), 64 * 1024):
            yield whole[start : start + 64 * 1024]

    headers = {**user.key_auth, "Content-Type": _form()}
    async with small.http.post(
        small.url + "/api/v1/files/", data=chunked(), headers=headers
    ) as reply:
        assert_refused(reply.status, await reply.json(), 413)
    assert await state_of(small, user) == before
    await still_works(small, user)


def _form() -> str:
    return f"multipart/form-data; boundary={BOUNDARY}"


async def test_wrong_content_types_and_malformed_multipart_are_400(
    stack: Stack, user: Account
) -> None:
    before = await state_of(stack, user)
    files = "/api/v1/files/"
    cases: list[tuple[str, bytes, str, int | tuple[int, ...]]] = [
        (files, b'{"file": "x"}', "application/json", 400),
        (files, b"file=x", "application/x-www-form-urlencoded", 400),
        (files, b"--x\r\nno boundary param\r\n", "multipart/form-data", 400),
        (files, b"complete garbage without any boundary", _form(), 400),
        (files, multipart("a.md", b"text")[:-30], _form(), 400),  # cut before its end
        (files, f"--{BOUNDARY}--\r\n".encode(), _form(), 400),  # no file field
        (
            files,
            multipart(
                "a.md",
                b"text",
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n'.encode()
                + b"[" * 100_000
                + b"\r\n",
            ),
            _form(),
            400,
        ),
        (CHAT, b"model=gpt-fake&messages=hi", "application/x-www-form-urlencoded", 400),
        (CHAT, b"<chat><model>gpt-fake</model></chat>", "application/xml", 400),
        (CHAT, b"", "application/json", 400),
        ("/api/v1/auths/signin", b"email=a&password=b", "application/x-www-form-urlencoded", 400),
    ]
    for path, body, content_type, expected in cases:
        status, reply, _ = await send(stack, user, path, body, content_type)
        assert_refused(status, reply, expected)
    assert await state_of(stack, user) == before
    await still_works(stack, user)


async def test_json_nesting_bombs_are_400_at_once(stack: Stack, user: Account) -> None:
    before = await state_of(stack, user)
    deep = 100_000
    arrays = b"[" * deep + b"]" * deep
    objects = b'{"a":' * deep + b"1" + b"}" * deep
    cases = [
        (CHAT, arrays),
        (CHAT, objects),
        (CHAT, b'{"model":"gpt-fake","messages":[{"role":"user","content":' + arrays + b"}]}"),
        (CHAT, b'{"model":"gpt-fake","messages":' + ASK_JSON + b',"tools":' + arrays + b"}"),
        ("/api/v1/knowledge/create", b'{"name":"bomb","data":{"x":' + arrays + b"}}"),
        ("/api/v1/chats/new", b'{"chat":{"title":"bomb","history":' + objects + b"}}"),
        ("/api/v1/auths/signup", arrays),
        ("/ollama/api/chat", b'{"model":' + arrays + b"}"),
    ]
    for path, body in cases:
        status, reply, seconds = await send(stack, user, path, body, "application/json")
        assert 400 <= status < 500, (path, status, reply)
        assert seconds < 2.0, (path, seconds)
    assert await state_of(stack, user) == before
    await still_works(stack, user)


ASK_JSON = b'[{"role":"user","content":"hello"}]'


async def test_absurd_sizes_and_invalid_utf8_are_400(stack: Stack, user: Account) -> None:
    before = await state_of(stack, user)
    many = b"[" + b",".join([b'{"role":"user","content":"x"}'] * 100_000) + b"]"
    cases = [
        b'{"model":"gpt-fake","messages":' + ASK_JSON + b',"max_tokens":1000000000000000000000}',
        b'{"model":"gpt-fake","messages":' + ASK_JSON + b',"max_tokens":-1}',
        b'{"model":"gpt-fake","messages":' + ASK_JSON + b',"max_tokens":"lots"}',
        b'{"model":"gpt-fake","messages":' + ASK_JSON + b',"temperature":1e308}',
        b'{"model":"gpt-fake","messages":' + many + b"}",
        b'{"model":"gpt-fake","messages":[]}',
        b'{"model":"' + b"m" * 10_000 + b'","messages":' + ASK_JSON + b"}",
        b'{"model":"gpt-fake","messages":[{"role":"user","content":"\xc3\x28 bad"}]}',
        b'{"model":"\xff\xfe","messages":' + ASK_JSON + b"}",
    ]
    for body in cases:
        status, reply, seconds = await send(stack, user, CHAT, body, "application/json")
        assert_refused(status, reply, 400)
        assert seconds < 2.0
    status, reply, _ = await send(
        stack, None, "/api/v1/auths/signup", b'{"name":"\xff","email":"a@b.c","password":"x"}',
        "application/json",
    )  # fmt: skip
    assert_refused(status, reply, 400)
    assert await state_of(stack, user) == before
    await still_works(stack, user)


def zip_bomb_docx(inflated_mib: int = 256) -> bytes:
    """A DOCX whose document.xml inflates to `inflated_mib` MiB from a few hundred KiB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            chunk = b" " * MIB
            for _ in range(inflated_mib):
                member.write(chunk)
    return buffer.getvalue()


async def test_documents_that_cannot_be_read_end_failed_with_a_reason(
    stack: Stack, rag: RagServices, user: Account
) -> None:
    bomb = zip_bomb_docx()
    assert len(bomb) < 2 * MIB
    cases = [
        ("report.pdf", b"this is not a PDF at all\n" * 100, "application/pdf"),
        ("truncated.pdf", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog", "application/pdf"),
        ("bomb.docx", bomb, "application/vnd.openxmlformats-officedocument.wordprocessingml"),
        ("fake.docx", b"PK\x03\x04 not really a zip", "application/octet-stream"),
    ]
    for name, content, content_type in cases:
        started = time.monotonic()
        record = await upload(stack, user, content, name, content_type)
        state = await settled(stack, user, record["id"], timeout=30)
        assert state["status"] == "failed", (name, state)
        assert state["error"], (name, state)
        assert time.monotonic() - started < 15, name
        status, body = await stack.call(
            "GET", f"/api/v1/files/{record['id']}/data/content", headers=user.key_auth
        )
        assert status == 404 and state["error"] in body["detail"], body
    await still_works(stack, user)


async def test_hostile_file_names_are_stored_as_one_safe_name(stack: Stack, user: Account) -> None:
    cases: dict[str, str | None] = {
        "../../../etc/passwd": "passwd",
        "..\\..\\windows\\win.ini": None,  # backslashes are quoted-pair escapes here
        "..\\\\..\\\\windows\\\\win.ini": "win.ini",
        "%2e%2e%2f%2e%2e%2fetc%2fshadow": "shadow",
        "nul%00byte.md": "nulbyte.md",
        "\u202egnp.md": "gnp.md",  # right-to-left override dropped
        "résumé 日本語 📄.md": "résumé 日本語 📄.md",
        "." * 10: "file",
        "x" * 5000 + ".md": "x" * 252 + ".md",
    }
    for raw, expected in cases.items():
        status, record, _ = await send(
            stack, user, "/api/v1/files/", multipart(raw, b"# hi\n"), _form()
        )
        assert status == 200, (raw, record)
        name = record["filename"]
        assert name == record["meta"]["name"]
        assert name == expected or expected is None, (raw, name)
        assert not set(name) & {"/", "\\", "\x00"}, name
        assert 0 < len(name) <= 255 and not name.startswith("."), name
        async with stack.http.get(
            f"{stack.url}/api/v1/files/{record['id']}/content", headers=user.key_auth
        ) as reply:
            assert reply.status == 200
            disposition = reply.headers["Content-Disposition"]
            assert disposition.startswith("attachment;")
            assert "/" not in disposition.split("filename*=")[0]
            assert await reply.read() == b"# hi\n"
    # a raw NUL cannot even be a header: the multipart body is malformed
    status, reply, _ = await send(
        stack, user, "/api/v1/files/", multipart("nul\x00byte.md", b"# hi\n"), _form()
    )
    assert_refused(status, reply, 400)
    await still_works(stack, user)


async def test_a_file_part_with_an_unsafe_content_type_header_is_still_served_as_download(
    stack: Stack, user: Account
) -> None:
    data = aiohttp.FormData()
    data.add_field(
        "file", b"<script>alert(1)</script>", filename="x.html", content_type="text/html"
    )
    status, record = await stack.call("POST", "/api/v1/files/", headers=user.key_auth, data=data)
    assert status == 200
    async with stack.http.get(
        f"{stack.url}/api/v1/files/{record['id']}/content", headers=user.key_auth
    ) as reply:
        assert reply.headers["Content-Disposition"].startswith("attachment;")
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
