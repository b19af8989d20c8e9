"""The web console in headless chromium against the live stack: what a newcomer does
without a terminal (sign up, copy a key, chat, upload, chat with the file, admin)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake, ScriptedReply
from tests.support.stack import PASSWORD, Account, RagServices, Stack

pytestmark = pytest.mark.browser

MODEL = "gpt-fake"
HANDBOOK = (
    "# Staff handbook\n\n"
    "Every employee gets 27 vacation days per year. Unused days carry over until March.\n\n"
    "The office opens at 8:30 and the last one out switches off the coffee machine.\n"
)


async def sign_in(page: Any, email: str, password: str = PASSWORD) -> None:
    await page.goto("/")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()


async def open_screen(page: Any, name: str) -> None:
    await page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def citing_responder(body: dict[str, Any]) -> ScriptedReply:
    """A model that answers from the first source of the RAG prompt and cites it."""
    prompt = str(body["messages"][-1]["content"])
    found = re.search(r'<source id="1"[^>]*>(.*?)</source>', prompt, re.S)
    assert found, "the gateway put the file's chunks into the prompt"
    sentences = re.split(r"(?<=\.)\s+|\n+", found.group(1))
    sentence = next(s for s in sentences if "vacation" in s).rstrip(".")
    answer = f"According to the handbook, {sentence[0].lower()}{sentence[1:]} [1]."
    words = answer.split(" ")
    return ScriptedReply(pieces=[w + " " for w in words[:-1]] + [words[-1]])


async def test_a_newcomer_signs_up_creates_a_key_and_uses_it_over_http(
    page: Any, stack: Stack, shots: Path
) -> None:
    await page.goto("/")
    await page.screenshot(path=str(shots / "signin.png"))
    await page.get_by_role("button", name="Create an account").click()
    email = f"newcomer-{uuid.uuid4().hex[:8]}@example.test"
    await page.get_by_label("Name").fill("Ada Newcomer")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await page.get_by_role("heading", name="New chat").wait_for()
    assert await page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly

    await open_screen(page, "Account")
    await page.get_by_text("You have no API key yet.").wait_for()
    await page.get_by_role("button", name="Create API key").click()
    key = await page.locator("#new-api-key").input_value()
    assert re.fullmatch(r"sk-[0-9a-f]{32}", key), key
    await page.get_by_role("button", name="Copy", exact=True).click()
    await page.get_by_role("button", name=re.compile("Copied|Select and copy it")).wait_for()
    await page.screenshot(path=str(shots / "account.png"), full_page=True)

    # the key works for plain HTTP clients
    status, models = await stack.call(
        "GET", "/api/models", headers={"Authorization": f"Bearer {key}"}
    )
    assert status == 200 and any(m["id"] == MODEL for m in models["data"])
    status, me = await stack.call(
        "GET", "/api/v1/auths/", headers={"Authorization": f"Bearer {key}"}
    )
    assert me["email"] == email

    # the page shows only the key's hint from now on, and revoking it ends it
    await page.reload()
    await page.get_by_text(re.compile(r"Your key: sk-")).wait_for()
    assert await page.locator("#new-api-key").count() == 0
    await page.get_by_role("button", name="Revoke").click()
    await page.get_by_role("dialog").get_by_role("button", name="Revoke key").click()
    await page.get_by_text("You have no API key yet.").wait_for()
    status, _ = await stack.call("GET", "/api/models", headers={"Authorization": f"Bearer {key}"})
    assert status == 401

    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_role("heading", name="Sign in").wait_for()
    status, _ = await stack.call("GET", "/api/v1/auths/")
    assert status == 401


async def test_chat_streams_the_answer_keeps_the_history_and_stops_on_request(
    page: Any,
    user: Account,
    shots: Path,
    backend_fakes: tuple[OpenAIFake, OllamaFake],
) -> None:
    openai_fake, _ = backend_fakes
    await sign_in(page, user.email)
    await page.get_by_role("heading", name="New chat").wait_for()
    await page.select_option("#model", MODEL)
    await page.get_by_label("Message", exact=True).fill("Hello there, console")
    await page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant .msg-body").last
    await answer.get_by_text("Echo: Hello there, console").wait_for()
    # [DONE] comes once the turn is stored in the chat: then Send is back
    await page.get_by_role("button", name="Send").wait_for()

    # the chat is kept: it is listed, and a reload of its address shows the turn again
    await (
        page.get_by_role("complementary", name="Chats")
        .get_by_text("Hello there, console")
        .wait_for()
    )
    assert re.search(r"#/chat/[\w-]+$", page.url), page.url
    await page.reload()
    await page.locator(".msg.user").get_by_text("Hello there, console").wait_for()
    await page.locator(".msg.assistant").get_by_text("Echo: Hello there, console").wait_for()
    await page.get_by_label("Message", exact=True).fill("And a second question?")
    await page.keyboard.press("Enter")
    await answer.get_by_text("Echo: And a second question?").wait_for()
    await page.screenshot(path=str(shots / "chat.png"))

    # a long answer streams piece by piece and stops when asked
    openai_fake.tokens_per_reply = 400
    openai_fake.token_delay = 0.05
    await page.get_by_label("Message", exact=True).fill("Count for a long time")
    await page.keyboard.press("Enter")
    await page.locator(".msg.assistant.streaming").get_by_text(re.compile(r"t3 ")).wait_for()
    assert await page.locator(".messages").get_attribute("aria-busy") == "true"
    await page.get_by_role("button", name="Stop").click()
    await page.get_by_text("Stopped. A stopped answer is not saved in the chat.").wait_for()
    assert await page.locator(".messages").get_attribute("aria-busy") == "false"
    streamed = await page.locator(".msg.assistant .msg-body").last.inner_text()
    assert "t3" in streamed and "t399" not in streamed

    # on a phone the same chat fits, its list behind a button
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.get_by_role("button", name="Chats", exact=True).wait_for()
    await page.screenshot(path=str(shots / "chat-phone.png"))


async def test_an_uploaded_file_completes_live_and_chat_cites_its_chunk(
    page: Any,
    user: Account,
    rag: RagServices,
    shots: Path,
    tmp_path: Path,
    backend_fakes: tuple[OpenAIFake, OllamaFake],
) -> None:
    openai_fake, _ = backend_fakes
    handbook = tmp_path / "handbook.md"
    handbook.write_text(HANDBOOK)
    await sign_in(page, user.email)
    await open_screen(page, "Files")
    await page.get_by_role("heading", name="Files and collections").wait_for()
    await page.locator("#upload-input").set_input_files(str(handbook))
    row = page.locator("tr", has_text="handbook.md")
    await row.get_by_text("Ready").wait_for(timeout=60_000)
    await page.get_by_role("status").get_by_text("handbook.md: Ready").wait_for()

    # a collection with the file in it
    await page.get_by_label("Name").fill("Company policies")
    await page.get_by_label("Description").fill("What every new colleague asks")
    await page.get_by_role("button", name="Create collection").click()
    await (
        page.locator(".kb", has_text="Company policies").get_by_role("button", name="Open").click()
    )
    dialog = page.get_by_role("dialog", name="Company policies")
    await dialog.get_by_role("button", name="Add file").click()
    await dialog.get_by_text("Files (1)").wait_for()
    await dialog.get_by_role("button", name="Close").click()
    await page.locator(".kb", has_text="1 file(s) · private").wait_for()
    await page.locator(".toast").first.wait_for(state="detached")
    await page.screenshot(path=str(shots / "files.png"))

    # chat with the file attached: the answer cites it, the citation opens the chunk
    openai_fake.responder = citing_responder
    try:
        await open_screen(page, "Chat")
        await page.select_option("#model", MODEL)
        await page.get_by_role("button", name="Attach").click()
        attach = page.get_by_role("dialog", name="Attach to this chat")
        await attach.get_by_label(re.compile("^handbook.md")).check()
        await attach.get_by_role("button", name="Attach selected").click()
        await (
            page.get_by_role("list", name="Attached to this chat")
            .get_by_text("handbook.md")
            .wait_for()
        )
        await page.get_by_label("Message", exact=True).fill("How many vacation days do I get?")
        await page.keyboard.press("Enter")
        cite = page.locator(".msg.assistant button.cite").first
        await cite.wait_for()
        assert await cite.get_attribute("aria-label") == "Source 1: handbook.md · chunk 1"
        await page.locator(".sources").get_by_text("handbook.md").wait_for()
        await page.screenshot(path=str(shots / "chat-sources.png"))
        await cite.click()
        source = page.get_by_role("dialog", name="Source [1]")
        await source.get_by_text("27 vacation days per year").wait_for()
        await page.screenshot(path=str(shots / "source.png"))
        await page.keyboard.press("Escape")
        await source.wait_for(state="detached")
    finally:
        openai_fake.responder = None


async def test_an_admin_activates_a_pending_user(
    browser: Any, page: Any, stack: Stack, admin: Account, shots: Path
) -> None:
    pending = await stack.signup(role="pending")
    waiting_context = await browser.new_context(
        base_url=stack.url, viewport={"width": 1280, "height": 800}
    )
    waiting = await waiting_context.new_page()
    try:
        await sign_in(waiting, pending.email)
        await waiting.get_by_role("heading", name="Waiting for an admin").wait_for()
        await waiting.get_by_text(pending.email).wait_for()
        await waiting.screenshot(path=str(shots / "pending.png"))

        await sign_in(page, admin.email)
        await open_screen(page, "Admin")
        row = page.locator(f'tr[data-user-id="{pending.id}"]')
        await row.get_by_role("button", name="Activate").wait_for()
        await page.get_by_text(re.compile(r"waiting for activation")).wait_for()
        await page.screenshot(path=str(shots / "admin.png"))
        await row.get_by_role("button", name="Activate").click()
        await row.get_by_role("button", name="Activate").wait_for(state="detached")
        assert await row.get_by_role("combobox").input_value() == "user"
        status, me = await stack.call("GET", "/api/v1/auths/", headers=pending.jwt_auth)
        assert (status, me["role"]) == (200, "user")

        # the waiting page lets the user in
        await waiting.get_by_role("button", name="Check again").click()
        await waiting.get_by_role("heading", name="New chat").wait_for()
    finally:
        await waiting_context.close()


async def test_signing_in_and_moving_around_works_from_the_keyboard(
    page: Any, user: Account
) -> None:
    await page.goto("/")
    await page.get_by_label("Email").wait_for()
    assert await page.evaluate("document.activeElement.type") == "email"  # focused at once
    await page.keyboard.type(user.email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name="New chat").wait_for()
    # a screen change moves the focus to its heading, for screen readers
    await page.get_by_role("link", name="Files").press("Enter")
    await page.get_by_role("heading", name="Files and collections").wait_for()
    focused = await page.evaluate("document.activeElement.textContent")
    assert focused == "Files and collections"
