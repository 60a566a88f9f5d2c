"""The token lifecycle in the console (docs/design.md §12): a device superseded by another that
registered its token, then forgotten, and a device whose token a push provider rejected, each
told in its timeline in words, with the erased token shown as erased and the chain intact."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.async_api import Page, expect

from tests.integration.console.browser import sign_in
from tests.integration.token_support import admin
from tests.support import ADMIN_KEYS, WorkerProcess, call, now_ms, registration, wait_for


async def register(worker: WorkerProcess, device: str, token: str, channel: str) -> None:
    body = registration(device, deviceToken=token, channels=[channel])
    status, answer = await call("POST", worker.url("messaging/registrations"), json=body)
    assert status == 200, answer


async def history_types(worker: WorkerProcess, device: str) -> list[Any]:
    status, body = await admin(worker, "GET", f"messaging/registrations/{device}/history")
    assert status == 200, body
    return [event["type"] for event in body["events"]]


async def test_given_superseded_forgotten_and_rejected_devices_then_their_timelines_say_so(
    devreg_worker: WorkerProcess, page: Page
) -> None:
    # Given a device whose token another device registered (one device per token), then
    # forgotten; and a device whose token the push provider rejected
    tag = uuid.uuid4().hex[:8]
    channel = f"life-{tag}"
    older, newer, rejected = f"older-{tag}", f"newer-{tag}", f"rejected-{tag}"
    await register(devreg_worker, older, f"shared-{tag}", channel)
    await register(devreg_worker, newer, f"shared-{tag}", channel)
    await wait_for(
        lambda: _has(devreg_worker, older, "device-superseded/1"), 30, "the older device superseded"
    )
    status, body = await admin(devreg_worker, "POST", f"devices/{older}/forget")
    assert status == 200, body
    await register(devreg_worker, rejected, f"bad-{tag}", channel)
    report = {
        "deviceId": rejected,
        "deviceToken": f"bad-{tag}",
        "provider": "apns",
        "reason": "Unregistered",
        "sentAt": now_ms(),
    }
    status, body = await admin(devreg_worker, "POST", "tokens/rejected", report)
    assert status == 200, body
    assert body["changed"] is True, body

    # When the operator opens the forgotten device's page
    key = ADMIN_KEYS["app-a"]
    await sign_in(page, devreg_worker.base_url, "app-a", key, f"#/device/{older}")

    # Then its timeline tells the registration (the token erased), the supersede and the erasure
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Device {older}")
    sentences = page.locator("#timeline .sentence")
    await expect(sentences).to_have_text(
        [
            f"Registered on {channel} (ANDROID 14, token (erased))",
            f"Superseded by {newer}, which registered the same token (was on {channel})",
            "Forgotten (requested): its token and user fingerprint erased",
        ]
    )
    await expect(page.locator("#chain-verdict")).to_contain_text("Hash chain intact: 3 events")

    # When the operator opens the rejected device's page (signed in already: the hash alone)
    await page.goto(f"{devreg_worker.base_url}/console#/device/{rejected}")

    # Then the removal gives the provider, its reason and when the push was sent
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Device {rejected}")
    await expect(sentences).to_have_count(2)
    await expect(sentences.nth(1)).to_have_text(
        re.compile(
            rf"^Removed: apns rejected its token \(Unregistered\) for a push sent at "
            rf"\d{{4}}-\d\d-\d\d [\d:.]+ UTC \(was on {channel}\)$"
        )
    )


async def _has(worker: WorkerProcess, device: str, kind: str) -> bool:
    return kind in await history_types(worker, device)
