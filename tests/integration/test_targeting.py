"""Targeting queries: channels with counts, devices on a channel (paged, by os), the export."""

from __future__ import annotations

import uuid

import aiohttp
import msgspec

from tests.support import WorkerProcess, admin_headers, call, registration


async def register_many(worker: WorkerProcess, channel: str, count: int) -> dict[str, str]:
    """`count` devices on `channel`, alternating IOS/ANDROID; returns device id -> os."""
    devices = {}
    for i in range(count):
        device_id = f"{channel}-{i:04d}"
        os_name = "IOS" if i % 2 else "ANDROID"
        body = registration(device_id, os=os_name, channels=[channel])
        status, answer = await call("POST", worker.url("messaging/registrations"), json=body)
        assert status == 200, answer
        devices[device_id] = os_name
    return devices


async def pages(worker: WorkerProcess, channel: str, query: str = "") -> list[dict[str, object]]:
    seen: list[dict[str, object]] = []
    cursor = ""
    while True:
        url = worker.url(f"messaging/channels/{channel}/devices?limit=40{query}{cursor}")
        status, body = await call("GET", url, headers=admin_headers())
        assert status == 200, body
        assert set(body["freshness"]) == {"appliedOffsets", "at"}
        seen.extend(body["devices"])
        if body["nextCursor"] is None:
            return seen
        cursor = f"&cursor={body['nextCursor']}"


async def test_given_devices_on_a_channel_when_paged_then_each_once_in_stable_order(
    devreg_worker: WorkerProcess,
) -> None:
    # Given 101 devices on a channel
    channel = f"c{uuid.uuid4().hex[:8]}"
    devices = await register_many(devreg_worker, channel, 101)

    # When paged 40 at a time, then every device comes exactly once, in device id order
    seen = await pages(devreg_worker, channel)
    assert [d["deviceId"] for d in seen] == sorted(devices)
    assert all(str(d["registrationId"]).isupper() for d in seen)

    # And the os filter keeps only that os
    ios = await pages(devreg_worker, channel, "&os=ios")
    assert [d["deviceId"] for d in ios] == sorted(k for k, v in devices.items() if v == "IOS")


async def test_given_a_channel_when_exported_then_ndjson_equals_the_pages(
    devreg_worker: WorkerProcess,
) -> None:
    channel = f"c{uuid.uuid4().hex[:8]}"
    await register_many(devreg_worker, channel, 30)
    url = devreg_worker.url(f"messaging/channels/{channel}/devices.ndjson")
    async with (
        aiohttp.ClientSession(headers=admin_headers()) as session,
        session.get(url) as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/x-ndjson"
        lines = (await response.read()).splitlines()
    exported = [msgspec.json.decode(line) for line in lines]
    assert exported == await pages(devreg_worker, channel)


async def test_given_channels_when_listed_then_active_device_counts(
    devreg_worker: WorkerProcess,
) -> None:
    # Given a channel with 3 devices, one of which then leaves it
    channel = f"c{uuid.uuid4().hex[:8]}"
    await register_many(devreg_worker, channel, 3)
    url = devreg_worker.url(f"messaging/registrations/{channel}-0000?channels={channel}")
    status, _ = await call("DELETE", url)
    assert status == 200

    # Then the channel list counts 2, and another app sees nothing of it
    status, body = await call("GET", devreg_worker.url("messaging/channels"), None, admin_headers())
    assert status == 200
    counts = {c["channel"]: c["devices"] for c in body["channels"]}
    assert counts[channel] == 2
    status, other = await call(
        "GET", devreg_worker.url("messaging/channels", app_id="app-b"), None, admin_headers("app-b")
    )
    assert status == 200
    assert channel not in {c["channel"] for c in other["channels"]}


async def test_given_bad_paging_parameters_then_backendless_errors(
    devreg_worker: WorkerProcess,
) -> None:
    base = devreg_worker.url("messaging/channels/x/devices")
    for query in ("?limit=0", "?limit=1001", "?limit=abc", "?cursor=%25%25", "?os=BEOS"):
        status, body = await call("GET", base + query, headers=admin_headers())
        assert status == 400, query
        assert body["code"] == 5002, query
        assert body["message"], query
    status, body = await call(
        "GET", devreg_worker.url("messaging/channels", key="wrong"), headers=admin_headers()
    )
    assert (status, body["code"]) == (401, 8002)
