"""Names a person may use, across two workers: device ids and channels with '?', '#', '%41',
spaces and non-ASCII are forwarded to the owning worker, and channel pages merged, as the
client sent them (the peer URL is built from the raw path, never from the decoded one).

The requests are raw HTTP with every path segment and query value percent-encoded, as a
correct client sends them: the JS SDK does not encode ids (Messaging.getRegistrations puts the
device id in the path as it is), so a name with '?', '#' or '%' cannot round-trip through it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from services.log.broker import EmbeddedBroker
from services.stream.ownership import Ownership
from tests.integration.scale_group import APP, PARTITIONS, group_formed, member
from tests.support import WorkerProcess, admin_headers, wait_for

SPECIAL = ["a?b", "c#d", "%41", "with space", "café ü", "日本"]
CHANNELS = [f"ch {name}" for name in SPECIAL]


def encoded(worker: WorkerProcess, *segments: str, query: dict[str, str] | None = None) -> URL:
    path = "/".join(quote(s, safe="") for s in segments)
    qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in (query or {}).items())
    return URL(worker.url(path) + (f"?{qs}" if qs else ""), encoded=True)


async def send(
    method: str, url: URL, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers=headers) as r,
    ):
        text = await r.read()
        if r.content_type == "application/x-ndjson":
            return r.status, [json.loads(line) for line in text.splitlines()]
        return r.status, json.loads(text)


@pytest.fixture
async def pair(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[list[WorkerProcess]]:
    prefix = f"names-{uuid.uuid4().hex[:8]}"
    workers = [member(broker, tmp_path / f"w{n}", prefix) for n in range(2)]
    await asyncio.gather(*(w.start() for w in workers))
    yield workers
    await asyncio.gather(*(w.stop() for w in workers))


def devices_on_both(owners: dict[str, list[int]]) -> dict[str, str]:
    """For each special name, a device id holding it on each worker's partitions:
    device id -> the owner's URL."""
    ownership = Ownership("http://unused", PARTITIONS)
    by_partition = {p: url for url, ps in owners.items() for p in ps}
    chosen: dict[str, str] = {}
    for name in SPECIAL:
        wanted = set(owners)
        for i in range(1000):
            device = f"{name} {i}"
            url = by_partition[ownership.partition_of(APP, device)]
            if url in wanted:
                chosen[device] = url
                wanted.discard(url)
            if not wanted:
                break
    return chosen


async def test_given_special_names_when_served_by_two_workers_then_forwarded_and_merged_intact(
    pair: list[WorkerProcess],
) -> None:
    owners = await wait_for(lambda: group_formed(pair), 30, "the group to form")
    devices = devices_on_both(owners)
    assert len(devices) == 2 * len(SPECIAL)

    # Given each device registered on every special channel, through the worker that does
    # not own it (so the POST is forwarded)
    other = {w.base_url: pair[1 - i] for i, w in enumerate(pair)}
    for device, owner in devices.items():
        body = {"deviceToken": f"t-{device}", "deviceId": device, "os": "IOS", "channels": CHANNELS}
        url = URL(other[owner].url("messaging/registrations"))
        assert (await send("POST", url, body))[0] == 200, device

    # Then each reads back through both workers, under its own id and channels
    for device in devices:
        for worker in pair:
            status, body = await send("GET", encoded(worker, "messaging", "registrations", device))
            assert status == 200, (device, worker.base_url, body)
            assert (body[0]["deviceId"], sorted(body[0]["channels"])) == (device, sorted(CHANNELS))
    # And each channel lists every device through both workers (pages and the export merge
    # both workers' partitions)
    expected = sorted(devices)
    for channel in CHANNELS:
        for worker in pair:
            page = encoded(worker, "messaging", "channels", channel, "devices")
            status, body = await send("GET", page, headers=admin_headers())
            assert status == 200, (channel, body)
            assert [d["deviceId"] for d in body["devices"]] == expected, channel
            export = encoded(worker, "messaging", "channels", channel, "devices.ndjson")
            status, lines = await send("GET", export, headers=admin_headers())
            assert [d["deviceId"] for d in lines] == expected, channel

    # When one channel is removed from each device through the worker that does not own it
    for device, owner in devices.items():
        url = encoded(
            other[owner], "messaging", "registrations", device, query={"channels": CHANNELS[0]}
        )
        assert await send("DELETE", url) == (200, {"result": True}), device

    # Then exactly that channel is gone, and the history (forwarded too) tells it
    for device, owner in devices.items():
        status, body = await send(
            "GET", encoded(other[owner], "messaging", "registrations", device)
        )
        assert sorted(body[0]["channels"]) == sorted(CHANNELS[1:]), device
        history = encoded(other[owner], "messaging", "registrations", device, "history")
        status, page = await send("GET", history, headers=admin_headers())
        assert status == 200, page
        assert [e["type"] for e in page["events"]] == [
            "device-registered/1",
            "device-unregistered/1",
        ]
        assert page["events"][1]["channels"] == [CHANNELS[0]]
