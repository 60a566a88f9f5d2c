"""An operator's session in the console, against one worker: devices registered through the
REST API are found in the channel list, on their channel's page and on their own page, with
a timeline of what happened, the registration as of an earlier instant, and new registrations
arriving in the live tail."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from playwright.async_api import Page, expect

from tests.integration.console.browser import sign_in
from tests.integration.console.conftest import Watched
from tests.support import ADMIN_KEYS, WorkerProcess, call, now_ms, registration, wait_for

HOSTILE = "<img src=x onerror=alert(1)>"


async def register(worker: WorkerProcess, device: str, **fields: object) -> None:
    status, body = await call(
        "POST", worker.url("messaging/registrations"), json=registration(device, **fields)
    )
    assert status == 200, body


async def instant_between() -> int:
    """Now, with the next registration in a later millisecond."""
    moment = now_ms()
    await wait_for(lambda: now_ms() > moment, what="the next millisecond")
    return moment


def picker_value(ms: int) -> str:
    """What a datetime-local input with millisecond steps holds for an instant (UTC)."""
    return (
        datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}"
    )


async def test_given_registered_devices_then_an_operator_finds_them_and_their_story(
    devreg_worker: WorkerProcess, page: Page
) -> None:
    # Given two devices on a channel, one of them moved to a new token and a second channel
    tag = uuid.uuid4().hex[:8]
    channel, second = f"news-{tag}", f"sport-{tag}"
    phone, tablet = f"phone-{tag}", f"tablet-{tag}"
    await register(devreg_worker, f"bystander-{uuid.uuid4().hex[:8]}", channels=["elsewhere"])
    await register(
        devreg_worker, phone, channels=[channel], os="IOS", osVersion="17", deviceToken="tok-1"
    )
    before_move = await instant_between()
    await register(devreg_worker, tablet, channels=[channel], os="ANDROID", deviceToken="tok-t")
    await register(
        devreg_worker, phone, channels=[second], os="IOS", osVersion="17", deviceToken="tok-2"
    )

    # When the operator signs in and searches the channels
    await sign_in(page, devreg_worker.base_url, "app-a", ADMIN_KEYS["app-a"])
    await page.get_by_label("Search channels").fill(tag)

    # Then both channels are listed with their device counts and a chart each
    rows = page.locator("#channels tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0).locator("th")).to_have_text(channel)
    await expect(rows.nth(0).locator("td").first).to_have_text("2")
    await expect(rows.nth(1).locator("th")).to_have_text(second)
    await expect(rows.nth(1).locator("td").first).to_have_text("1")
    await expect(page.get_by_role("status").first).to_have_text(
        re.compile(r"^2 channels of \d+\.$")
    )
    chart = rows.nth(0).get_by_role("img")
    await expect(chart).to_have_attribute(
        "aria-label", re.compile(rf"^{channel}: 0 devices at .*, 2 at ")
    )
    # And sorting by the count puts the busier channel first, then the other way round
    await page.get_by_role("button", name="Devices now").click()
    await expect(rows.nth(0).locator("th")).to_have_text(channel)
    await page.get_by_role("button", name="Devices now").click()
    await expect(rows.nth(0).locator("th")).to_have_text(second)
    await expect(page.locator("th[aria-sort=ascending]")).to_have_text(re.compile("Devices now"))

    # When the operator opens the first channel
    await page.get_by_role("link", name=channel, exact=True).click()

    # Then its devices are listed, and the OS filter narrows them
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Channel {channel}")
    devices = page.locator("#devices tbody tr")
    await expect(devices).to_have_count(2)
    await expect(devices.nth(0).locator("th")).to_have_text(phone)
    await expect(devices.nth(0).locator("td.token")).to_have_text("tok-2")
    await expect(devices.nth(1).locator("th")).to_have_text(tablet)
    await page.get_by_label("Operating system").select_option("ANDROID")
    await expect(devices).to_have_count(1)
    await expect(devices.nth(0).locator("th")).to_have_text(tablet)
    await expect(page.locator(".status").first).to_have_text("ANDROID devices 1 to 1.")
    await expect(page.locator(".chart-large figcaption")).to_have_text(re.compile("2 devices now"))
    await page.get_by_label("Operating system").select_option("WP")
    await expect(page.locator(".status").first).to_have_text(
        f"No WP devices on {channel} right now."
    )
    await page.get_by_label("Operating system").select_option("")

    # When the operator opens the phone's page
    await page.get_by_role("link", name=phone, exact=True).click()

    # Then its registration as GET answers it, its history as a timeline, and the verdict
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Device {phone}")
    card = page.locator("#registration dl")
    await expect(card.locator("dd").nth(0)).to_have_text("tok-2")
    await expect(card.locator("dd").nth(2)).to_have_text(f"{channel}{second}")
    events = page.locator("#timeline li")
    await expect(events).to_have_count(2)
    await expect(events.nth(0).locator(".sentence")).to_have_text(
        f"Registered on {channel} (IOS 17, token tok-1)"
    )
    await expect(events.nth(1).locator(".sentence")).to_have_text(
        f"Added to {second}; token changed from tok-1 to tok-2"
    )
    await expect(events.nth(0).locator(".check")).to_have_text("✓ hash checked")
    await expect(events.nth(0).locator(".hash")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    await expect(page.locator("#chain-verdict")).to_have_text(
        "Hash chain intact: 2 events, each hash recomputed from its content and linked to the"
        " one before."
    )

    # When the operator picks an instant before the move
    await page.get_by_label("Instant (UTC)").fill(picker_value(before_move))
    await page.get_by_role("button", name="Show the registration then").click()

    # Then the registration as it was: the first token, one channel
    then = page.locator("#as-of")
    await expect(then.locator(".as-of-title")).to_have_text(re.compile(r"^As of \d{4}-\d\d-\d\d "))
    await expect(then.locator("dd").nth(0)).to_have_text("tok-1")
    await expect(then.locator("dd").nth(2)).to_have_text(channel)
    # And before it was ever registered, there was nothing
    await page.get_by_label("Instant (UTC)").fill("2001-01-01T00:00:00.000")
    await page.get_by_role("button", name="Show the registration then").click()
    await expect(then).to_have_text(
        re.compile(r"^At 2001-01-01 00:00:00\.000 UTC this device had no registration\.$")
    )


async def test_given_the_live_view_then_new_registrations_appear_as_they_happen(
    devreg_worker: WorkerProcess, page: Page
) -> None:
    tag = uuid.uuid4().hex[:8]
    await sign_in(page, devreg_worker.base_url, "app-a", ADMIN_KEYS["app-a"])
    await page.get_by_role("link", name="Live").click()

    # Given the live view listening to everything
    await page.get_by_role("button", name="Start").click()
    await expect(page.locator("#live-status")).to_have_text(
        "Listening: every channel and device (one worker)."
    )

    # When a device registers through the REST API
    await register(devreg_worker, f"live-{tag}", channels=[f"ch-{tag}"], deviceToken="tok-live")

    # Then it appears in the tail: its channel's creation and its registration
    lines = page.locator("#live-events li")
    line = lines.filter(has_text=f"live-{tag}")
    await expect(line).to_have_count(1)
    await expect(line.locator(".sentence")).to_have_text(
        f"Registered on ch-{tag} (ANDROID 14, token tok-live)"
    )
    await expect(lines.filter(has_text=f"Channel ch-{tag} created")).to_have_count(1)
    # And its device id leads to the device's page
    await expect(line.get_by_role("link")).to_have_attribute("href", f"#/device/live-{tag}")

    # When the tail is narrowed to one channel
    await page.get_by_role("button", name="Stop").click()
    await expect(page.locator("#live-status")).to_have_text("Stopped.")
    await page.get_by_label("Only channel").fill(f"only-{tag}")
    await page.get_by_role("button", name="Start").click()
    await expect(page.locator("#live-status")).to_have_text(
        f"Listening: channel only-{tag} (one worker)."
    )
    await register(devreg_worker, f"elsewhere-{tag}", channels=[f"ch-{tag}"])
    await register(devreg_worker, f"there-{tag}", channels=[f"only-{tag}"])
    await register(devreg_worker, f"there-too-{tag}", channels=[f"only-{tag}"])

    # Then only that channel's events arrive
    await expect(lines.filter(has_text=f"there-too-{tag}")).to_have_count(1)
    await expect(lines.filter(has_text=f"there-{tag}")).to_have_count(1)
    await expect(lines.filter(has_text=f"elsewhere-{tag}")).to_have_count(0)
    # And the newest is on top, whatever partition each came from
    times = await lines.locator("time").all_inner_texts()
    assert len(times) >= 4
    assert times == sorted(times, reverse=True)


async def test_given_hostile_names_then_the_page_shows_them_as_text_and_runs_nothing(
    devreg_worker: WorkerProcess, page: Page, watched: Watched
) -> None:
    # Given a device whose id, token and channel are markup that would run script
    await register(devreg_worker, HOSTILE, channels=[HOSTILE], deviceToken=HOSTILE)
    await sign_in(page, devreg_worker.base_url, "app-a", ADMIN_KEYS["app-a"])

    # Then the channel list shows the name as text
    await page.get_by_label("Search channels").fill("<img")
    row = page.locator("#channels tbody tr")
    await expect(row).to_have_count(1)
    await expect(row.locator("th")).to_have_text(HOSTILE)
    # And so do the channel's page, the device's page, its timeline and the live tail
    await row.get_by_role("link").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Channel {HOSTILE}")
    await expect(page.locator("#devices tbody td.token")).to_have_text(HOSTILE)
    await page.locator("#devices tbody th a").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Device {HOSTILE}")
    await expect(page.locator("#timeline .sentence")).to_have_text(
        f"Registered on {HOSTILE} (ANDROID 14, token {HOSTILE})"
    )
    await page.get_by_role("link", name="Live").click()
    await page.get_by_label("Only device").fill(HOSTILE)
    await page.get_by_role("button", name="Start").click()
    await expect(page.locator("#live-status")).to_have_text(re.compile("^Listening"))
    await register(devreg_worker, HOSTILE, channels=["second"], deviceToken=HOSTILE)
    await expect(page.locator("#live-events .sentence")).to_have_text(
        f"Registered on second (ANDROID 14, token {HOSTILE})"
    )

    # And no element was made of it, no script ran (the page fixture fails on a dialog)
    assert await page.locator("img").count() == 0
    assert watched.dialogs == []


async def test_given_a_wrong_key_then_a_plain_message_and_the_key_is_kept_nowhere(
    devreg_worker: WorkerProcess, page: Page
) -> None:
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    key = ADMIN_KEYS["app-a"]
    await page.goto(f"{devreg_worker.base_url}/console")

    # When the operator signs in with nothing, then with a wrong key
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Enter both the app id and its admin key.")
    await page.get_by_label("App id").fill("app-a")
    await page.get_by_label("Admin key").fill("not-the-key")
    await page.get_by_role("button", name="Sign in").click()

    # Then a sentence a person can act on
    await expect(page.get_by_role("alert")).to_have_text(
        "devreg did not accept that app id and admin key. Check both and sign in again."
    )

    # When signed in with the right key
    await page.get_by_label("Admin key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Channels", exact=True)).to_be_visible()

    # Then the key is in no URL, no cookie, no storage, and no longer in the form
    assert urls
    assert not [u for u in urls if key in u or "not-the-key" in u]
    assert await page.evaluate("document.cookie") == ""
    assert await page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert key not in await page.content()
    # And a reload forgets it: sign in again
    await page.reload()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # And the worker logged neither key
    assert "not-the-key" not in devreg_worker.log()
