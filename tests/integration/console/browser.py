"""Debian's Chromium, driven through CDP by Playwright, for the console's tests and the
README's screenshots. Never a browser of Playwright's own (`playwright install` downloads one):
`make test` installs Debian's package when it is missing (Makefile, `browser`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.async_api import Browser, Page, Playwright, expect

DEFAULT = "/usr/bin/chromium"
INSTALL = (
    "The console tests drive Debian's Chromium and cannot find it. Install it with"
    " `sudo apt-get install chromium` (`make test` does so itself when run as root), or set"
    " DEVREG_CHROMIUM to a Chromium executable."
)
# Headless, and quiet: no first-run work, no calls home (the machine has no network beyond the
# package mirrors, and the tests want no background traffic). Playwright gives each launch a
# fresh profile directory of its own.
ARGS = [
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000  # every expectation waits this long for the page, then fails


def chromium() -> str | None:
    """The Chromium to drive, or None."""
    wanted = os.environ.get("DEVREG_CHROMIUM") or DEFAULT
    found = wanted if Path(wanted).is_file() else shutil.which(wanted)
    return found if found and os.access(found, os.X_OK) else None


async def launch(playwright: Playwright, executable: str) -> Browser:
    # As root (CI, containers) Chromium refuses to start with its sandbox.
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []
    expect.set_options(timeout=TIMEOUT_MS)
    return await playwright.chromium.launch(executable_path=executable, args=ARGS + sandbox)


async def sign_in(page: Page, base_url: str, app_id: str, key: str, view: str = "") -> None:
    """Load the console (at `view`, a fragment such as `#/live`) and sign in: a page load
    always asks, the key is kept in the page's memory only."""
    await page.goto(f"{base_url}/console{view}")
    await page.get_by_label("App id").fill(app_id)
    await page.get_by_label("Admin key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    if not view:
        await expect(page.get_by_role("heading", name="Channels", exact=True)).to_be_visible()
