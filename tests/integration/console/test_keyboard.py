"""Every action of the console is reachable by keyboard: sign in, move between views, sort,
open a channel and a device, ask for the registration as of an event; and the element that
has the keyboard's focus is visibly marked."""

from __future__ import annotations

import uuid

from playwright.async_api import Page, expect

from tests.integration.console.test_console import register
from tests.support import ADMIN_KEYS, WorkerProcess

MAX_TABS = 40  # a bound on the walk: the page has fewer stops than this before the target


async def tab_to(page: Page, name: str) -> None:
    """Press Tab until the focused element's accessible text is `name`."""
    for _ in range(MAX_TABS):
        await page.keyboard.press("Tab")
        text = await page.evaluate(
            "document.activeElement.getAttribute('aria-label') ||"
            " document.activeElement.textContent.trim()"
        )
        if text == name:
            return
    raise AssertionError(f"{name!r} is not reachable with Tab")


async def focus_is_visible(page: Page) -> bool:
    style = await page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth]; })()"
    )
    return bool(style[0] != "none" and style[1] != "0px")


async def test_given_only_a_keyboard_then_an_operator_gets_everywhere(
    devreg_worker: WorkerProcess, page: Page
) -> None:
    tag = uuid.uuid4().hex[:8]
    await register(devreg_worker, f"kb-{tag}", channels=[f"kb-{tag}"], deviceToken="k1")
    await register(devreg_worker, f"kb-{tag}", channels=[f"kb2-{tag}"], deviceToken="k2")
    await page.goto(f"{devreg_worker.base_url}/console")

    # Sign in: the app id has the focus, Tab to the key, Enter submits
    await expect(page.get_by_label("App id")).to_be_focused()
    await page.keyboard.type("app-a")
    await page.keyboard.press("Tab")
    await page.keyboard.type(ADMIN_KEYS["app-a"])
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Channels", exact=True)).to_be_focused()

    # Search, then sort by count from the keyboard
    await page.keyboard.press("Tab")  # from the heading, the first stop is the search field
    await expect(page.get_by_label("Search channels")).to_be_focused()
    await page.keyboard.type(tag)
    await expect(page.locator("#channels tbody tr")).to_have_count(2)
    await tab_to(page, "Devices now")
    assert await focus_is_visible(page)
    await page.keyboard.press("Enter")
    await expect(page.locator("th[aria-sort=descending]")).to_contain_text("Devices now")

    # Open the channel, then the device, with Tab and Enter
    await tab_to(page, f"kb-{tag}")
    assert await focus_is_visible(page)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Channel kb-{tag}")
    await tab_to(page, f"kb-{tag}")  # the device's link (the channel is the heading)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Device kb-{tag}")

    # Ask for the registration as of the first event
    await expect(page.locator("#timeline li")).to_have_count(2)
    await tab_to(page, "Registration then")
    assert await focus_is_visible(page)
    await page.keyboard.press("Enter")
    await expect(page.locator("#as-of dd").first).to_have_text("k1")

    # And the header's links take the keyboard to the live view
    await tab_to(page, "Live")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Live")).to_be_focused()
    await tab_to(page, "Start")
    await page.keyboard.press("Enter")
    await expect(page.locator("#live-status")).to_contain_text("Listening")
