"""The web console against the live e2e stack (auth, inference-proxy with the backend
fakes, gateway, retrieval and ingestion), driven over HTTP and in headless chromium.

Browser tests need Debian's chromium (`make system-packages`); Playwright drives it through
`executable_path`, since its own browser download fails offline. Without it they skip,
saying so. `RAGWAY_CONSOLE_SCREENSHOTS=docs/console` makes them save the screenshots the
README shows (`make console-screenshots`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import Stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, or a skip that says how to get it."""
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM}: `make system-packages` installs it")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("playwright is not installed: `make setup` installs the dev extras")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Any, stack: Stack) -> AsyncIterator[Any]:
    """A fresh browser context (no cookies) on a laptop-sized window."""
    context = await browser.new_context(
        base_url=stack.url, viewport={"width": 1280, "height": 800}, device_scale_factor=1
    )
    context.set_default_timeout(20_000)
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    yield tab
    await context.close()
    # a CSP violation or an uncaught exception shows up here
    assert not [e for e in errors if "status of 4" not in e], errors


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: docs/console when asked for, a temporary folder otherwise."""
    wanted = os.environ.get("RAGWAY_CONSOLE_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("console-shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
