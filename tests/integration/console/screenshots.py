"""The README's pictures of the console, taken by the browser the tests drive:

    make screenshots        # or: python -m tests.integration.console.screenshots docs/console

Starts a broker and a worker of its own, gives it a week of history (commands published with
their own `issued_at`, so the charts have a shape), then signs in and photographs each view.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
from pathlib import Path

from playwright.async_api import Page, async_playwright, expect

from events import RegisterDevice, UnregisterDevice
from services.log.broker import EmbeddedBroker
from tests.integration.console.browser import chromium, launch, sign_in
from tests.support import ADMIN_KEYS, WorkerProcess, call, now_ms, wait_for
from tests.topics import publish_commands

APP = "app-a"
DAY = 24 * 3600 * 1000
CHANNELS = ["news", "sport", "weather", "promo-eu", "beta-testers"]
STAR = "pixel-8-anna"  # the device whose page is shown


def week_of_history(start: int) -> list[RegisterDevice | UnregisterDevice]:
    """Devices arriving over a week, a few leaving; the star changes token and channels."""
    rng = random.Random(17)
    commands: list[tuple[int, RegisterDevice | UnregisterDevice]] = []
    for i in range(60):
        at = start + int(7 * DAY * (i / 60) ** 0.8) + rng.randrange(3600_000)
        device = f"device-{i:03d}"
        channels = tuple(c for c in CHANNELS if rng.random() < (0.7 if c == "news" else 0.3))
        commands.append((at, _register(f"r{i}", device, at, channels or ("news",), rng)))
        if rng.random() < 0.15:
            leaving = at + rng.randrange(DAY)
            commands.append((leaving, _unregister(f"u{i}", device, leaving)))
    star = [
        (start + DAY, _register("s1", STAR, start + DAY, ("news",), rng, "fcm:7f3a…e91")),
        (start + 3 * DAY, _register("s2", STAR, start + 3 * DAY, ("sport",), rng, "fcm:7f3a…e91")),
        (start + 5 * DAY, _register("s3", STAR, start + 5 * DAY, ("sport",), rng, "fcm:c04d…118")),
        (start + 6 * DAY, _unregister("s4", STAR, start + 6 * DAY, ("news",))),
    ]
    return [c for _, c in sorted([*commands, *star], key=lambda pair: pair[0])]


def _register(
    cid: str,
    device: str,
    at: int,
    channels: tuple[str, ...],
    rng: random.Random,
    token: str | None = None,
) -> RegisterDevice:
    os_name = rng.choice(["IOS", "ANDROID", "ANDROID"])
    return RegisterDevice(
        command_id=cid,
        app_id=APP,
        device_id=device,
        issued_at=at,
        device_token=token or f"{'apns' if os_name == 'IOS' else 'fcm'}:{rng.getrandbits(40):010x}",
        os="ANDROID" if device == STAR else os_name,
        os_version="14" if device == STAR else rng.choice(["13", "14", "17.4", "18.1"]),
        channels=channels,
    )


def _unregister(
    cid: str, device: str, at: int, channels: tuple[str, ...] | None = None
) -> UnregisterDevice:
    return UnregisterDevice(
        command_id=cid, app_id=APP, device_id=device, issued_at=at, channels=channels
    )


async def photograph(page: Page, worker: WorkerProcess, out: Path) -> None:
    await page.goto(f"{worker.base_url}/console")
    await page.get_by_label("App id").fill(APP)
    await page.screenshot(path=out / "sign-in.png")

    await sign_in(page, worker.base_url, APP, ADMIN_KEYS[APP])
    await page.get_by_role("button", name="Devices now").click()
    await expect(page.locator("#channels td.chart svg")).to_have_count(len(CHANNELS))
    await page.screenshot(path=out / "channels.png", full_page=True)

    await page.get_by_role("link", name="news", exact=True).click()
    await expect(page.locator("#devices tbody tr").first).to_be_visible()
    await expect(page.locator(".chart-large svg")).to_be_visible()
    await page.screenshot(path=out / "channel.png")  # the first rows: the page is long

    await page.goto("about:blank")  # a new page load: the console asks for the key again
    await sign_in(page, worker.base_url, APP, ADMIN_KEYS[APP], f"#/device/{STAR}")
    await expect(page.locator("#timeline li")).to_have_count(4)
    await page.locator("#timeline li").nth(1).get_by_role("button").click()
    await expect(page.locator("#as-of dl")).to_be_visible()
    await page.screenshot(path=out / "device.png", full_page=True)

    await page.get_by_role("navigation").get_by_role("link", name="Live").click()
    await page.get_by_role("button", name="Start").click()
    await expect(page.locator("#live-status")).to_contain_text("Listening")
    url = worker.url("messaging/registrations")
    for i, (device, channels) in enumerate(
        [("ipad-kitchen", ["news", "weather"]), ("galaxy-s24-omar", ["sport"])]
    ):
        body = {
            "deviceToken": f"apns:{i}b7e…",
            "deviceId": device,
            "os": "IOS",
            "osVersion": "18.1",
        }
        status, _ = await call("POST", url, json={**body, "channels": channels})
        assert status == 200
    status, _ = await call("DELETE", f"{url}/device-004")
    assert status == 200
    await expect(page.locator("#live-events li").filter(has_text="device-004")).to_have_count(1)
    await page.screenshot(path=out / "live.png", full_page=True)


async def main(out: Path) -> None:
    executable = chromium()
    if executable is None:
        raise SystemExit("no Chromium: sudo apt-get install chromium (or set DEVREG_CHROMIUM)")
    with tempfile.TemporaryDirectory() as scratch:
        broker = EmbeddedBroker(log_path=Path(scratch) / "tansu.log")
        await broker.start()
        try:
            async with WorkerProcess(Path(scratch) / "worker", broker.bootstrap) as worker:
                commands = week_of_history(now_ms() - 7 * DAY - 3600_000)
                await publish_commands(broker.bootstrap, f"{worker.prefix}.commands", commands)
                star = worker.url(f"messaging/registrations/{STAR}")
                await wait_for(lambda: _present(star), 60, "the history to be applied")
                async with async_playwright() as playwright:
                    browser = await launch(playwright, executable)
                    page = await browser.new_page(viewport={"width": 1200, "height": 760})
                    await photograph(page, worker, out)
                    await browser.close()
        finally:
            await broker.stop()


async def _present(url: str) -> bool:
    status, _ = await call("GET", url)
    return status == 200


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console")
    folder.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(folder))
