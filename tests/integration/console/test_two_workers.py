"""The console against two workers of one group: a device's page shows the same device
whichever worker serves the console (the device's routes are forwarded to its owner), the
channel list and its charts count every partition, and the live tail on one worker shows
registrations decided on the other."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from events.identity import partition_key
from services.kafka.partitioner import partition_for
from services.log.broker import EmbeddedBroker
from tests.integration.console.browser import sign_in
from tests.integration.console.test_console import register
from tests.integration.scale_group import PARTITIONS, group_formed, member
from tests.support import ADMIN_KEYS, WorkerProcess, wait_for


@pytest.fixture
async def pair(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[list[WorkerProcess]]:
    prefix = f"console-{uuid.uuid4().hex[:8]}"
    workers = [member(broker, tmp_path / f"w{n}", prefix) for n in range(2)]
    try:
        await asyncio.gather(*(w.start() for w in workers))
        yield workers
    finally:
        await asyncio.gather(*(w.stop() for w in workers))


def device_owned_by(owned: list[int], tag: str, start: int = 0) -> str:
    """A device id of app-a whose partition is one of `owned`."""
    for i in range(start, start + 1000):
        device = f"dev-{tag}-{i}"
        if partition_for(partition_key("app-a", device), PARTITIONS) in owned:
            return device
    raise AssertionError("no such device id in 1000 tries")


async def test_given_two_workers_then_the_console_on_either_shows_the_same_devices(
    pair: list[WorkerProcess], page: Page
) -> None:
    # Given a group of two, and one device on a partition of each
    owners = await wait_for(lambda: group_formed(pair), 60, "the group to form")
    first, second = pair
    tag = uuid.uuid4().hex[:6]
    channel = f"both-{tag}"
    mine = device_owned_by(owners[first.base_url], tag)
    theirs = device_owned_by(owners[second.base_url], tag)
    for device in (mine, theirs):
        await register(first, device, channels=[channel], deviceToken=f"tok-{device}")
    await register(first, theirs, channels=[f"{channel}-x"], deviceToken="tok-moved")

    # When the device of the second worker is opened in the console of either worker
    shown: list[tuple[str, ...]] = []
    for worker in pair:
        await sign_in(page, worker.base_url, "app-a", ADMIN_KEYS["app-a"], f"#/device/{theirs}")
        await expect(page.get_by_role("heading", level=1)).to_have_text(f"Device {theirs}")
        await expect(page.locator("#timeline li")).to_have_count(2)
        await expect(page.locator("#chain-verdict")).to_contain_text("Hash chain intact: 2 events")
        token = await page.locator("#registration dd").first.inner_text()
        sentences = await page.locator("#timeline .sentence").all_inner_texts()
        hashes = await page.locator("#timeline .hash").all_inner_texts()
        shown.append((token, *sentences, *hashes))

    # Then both show the same registration and the same history
    assert shown[0] == shown[1]
    assert shown[0][0] == "tok-moved"

    # And the channel list, on either worker, counts the devices of both
    await page.get_by_role("navigation").get_by_role("link", name="Channels").click()
    await page.get_by_label("Search channels").fill(channel)
    row = page.locator("#channels tbody tr").filter(
        has=page.get_by_role("link", name=channel, exact=True)
    )
    await expect(row.locator("td").first).to_have_text("2")
    await expect(row.get_by_role("img")).to_have_attribute("aria-label", re.compile(r", 2 at "))

    # When the live tail runs on the first worker and a device registers on the second's
    await sign_in(page, first.base_url, "app-a", ADMIN_KEYS["app-a"], "#/live")
    await page.get_by_role("button", name="Start").click()
    await expect(page.locator("#live-status")).to_have_text(
        "Listening: every channel and device (2 workers)."
    )
    late = device_owned_by(owners[second.base_url], tag, start=1000)
    await register(second, late, channels=[channel])

    # Then it appears in the first worker's tail
    await expect(page.locator("#live-events li").filter(has_text=late)).to_have_count(1)
