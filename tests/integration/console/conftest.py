"""The browser for the console's tests: found or the tests fail saying how to get it (never
skipped), one per session, and a fresh page (context: no cookies, no storage) per test that
fails the test on any script error or dialog."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, ConsoleMessage, Dialog, Page, async_playwright

from tests.integration.console.browser import INSTALL, chromium, launch

_EXPECTED_REFUSAL = re.compile(r"Failed to load resource: .* status of 40[013] ")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium()
    if executable is None:
        pytest.fail(INSTALL, pytrace=False)
    async with async_playwright() as playwright:
        launched = await launch(playwright, executable)
        yield launched
        await launched.close()


class Watched:
    """What the page did that it must not: script errors, dialogs (an alert() is injected
    script), console errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    def console(self, message: ConsoleMessage) -> None:
        # A refused sign-in (401) and "no registration" (400, code 5000, as Backendless
        # answers it) are answers the page expects and words for the person; Chromium still
        # logs them. Anything else logged as an error (a policy violation, say) counts.
        if message.type == "error" and not _EXPECTED_REFUSAL.match(message.text):
            self.errors.append(message.text)

    async def dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()


@pytest.fixture
async def watched() -> Watched:
    return Watched()


@pytest.fixture
async def page(browser: Browser, watched: Watched) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    opened = await context.new_page()
    opened.on("pageerror", lambda error: watched.errors.append(str(error)))
    opened.on("console", watched.console)
    opened.on("dialog", watched.dialog)
    yield opened
    await context.close()
    assert watched.dialogs == [], "the page opened a dialog: injected script ran"
    assert watched.errors == [], "the page logged errors"
