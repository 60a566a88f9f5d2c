"""The admin routes the console reads (beyond the trust issue's): a channel's devices over
time, a history page's chain check, the live tail, and the console's own files."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.integration.live_client import LiveStream
from tests.support import (
    WorkerProcess,
    admin_headers,
    call,
    now_ms,
    registration,
    wait_for,
)

HOSTILE = "<img src=x onerror=alert(1)>"


async def _series(worker: WorkerProcess, channel: str, since: int, until: int) -> list[int]:
    url = worker.admin_url(f"messaging/channels/{channel}/subscriptions")
    query = f"?since={since}&until={until}&points=2"
    status, body = await call("GET", url + query, headers=admin_headers())
    assert status == 200, body
    assert body["at"] == [since, until]
    return body["devices"]  # type: ignore[no-any-return]


async def _moment() -> int:
    """Now, and the next registration lands in a later millisecond."""
    moment = now_ms()
    await wait_for(lambda: now_ms() > moment, what="the next millisecond")
    return moment


async def test_given_devices_joining_and_leaving_then_the_series_counts_them_at_each_instant(
    devreg_worker: WorkerProcess,
) -> None:
    # Given two devices joining a channel, then one leaving it
    channel = f"series-{uuid.uuid4().hex[:8]}"
    url = devreg_worker.url("messaging/registrations")
    before = await _moment()
    for device in ("s1", "s2"):
        status, _ = await call(
            "POST", url, json=registration(f"{channel}-{device}", channels=[channel])
        )
        assert status == 200
    both = await _moment()
    status, _ = await call("DELETE", f"{url}/{channel}-s1")
    assert status == 200
    after = await _moment()

    # Then the series counts nobody before, both between, one after
    assert await _series(devreg_worker, channel, before, both) == [0, 2]
    assert await _series(devreg_worker, channel, both, after) == [2, 1]
    # And the default window is the last day, with the default number of instants
    status, body = await call(
        "GET",
        devreg_worker.admin_url(f"messaging/channels/{channel}/subscriptions"),
        headers=admin_headers(),
    )
    assert status == 200
    assert (len(body["at"]), body["devices"][-1]) == (60, 1)
    assert body["until"] - body["since"] == 24 * 3600 * 1000


async def test_given_bad_or_hostile_series_queries_then_clear_errors_never_a_500(
    devreg_worker: WorkerProcess,
) -> None:
    base = devreg_worker.admin_url("messaging/channels/news/subscriptions")
    for query in ("?points=1", "?points=501", "?points=x", "?since=5&until=5", "?since=soon"):
        status, body = await call("GET", base + query, headers=admin_headers())
        assert (status, body["code"]) == (400, 5002), (query, body)
    hostile = devreg_worker.admin_url(f"messaging/channels/{HOSTILE}/subscriptions")
    status, body = await call("GET", hostile, headers=admin_headers())
    assert status == 200
    assert set(body["devices"]) == {0}


async def test_given_no_or_a_wrong_admin_key_then_refused(devreg_worker: WorkerProcess) -> None:
    paths = ["messaging/channels", "messaging/channels/news/subscriptions", "live"]
    for path in paths:
        url = devreg_worker.admin_url(path)
        for headers in ({}, {"X-Devreg-Admin-Key": "wrong"}, admin_headers("app-b")):
            status, body = await call("GET", url, headers=headers)
            assert status in (401, 403), (path, headers)
            assert set(body) == {"code", "message", "errorData"}


async def test_given_a_history_then_each_page_says_its_chain_holds(
    devreg_worker: WorkerProcess,
) -> None:
    device = f"chain-{uuid.uuid4().hex[:8]}"
    url = devreg_worker.url("messaging/registrations")
    for token in ("t1", "t2", "t3"):
        status, _ = await call("POST", url, json=registration(device, deviceToken=token))
        assert status == 200
    history = devreg_worker.admin_url(f"messaging/registrations/{device}/history")

    status, first = await call("GET", history + "?limit=2", headers=admin_headers())
    assert status == 200
    status, second = await call("GET", history + "?limit=2&after=2", headers=admin_headers())
    assert status == 200

    assert first["checks"] == [{"status": "applied", "hashOk": True}] * 2
    assert first["chain"] == {"intact": True, "checked": 2}
    assert second["chain"] == {"intact": True, "checked": 1}  # linked to version 2
    assert second["nextAfter"] is None


async def test_given_a_live_stream_then_new_events_of_its_app_and_filter_arrive(
    devreg_worker: WorkerProcess,
) -> None:
    channel = f"live-{uuid.uuid4().hex[:8]}"
    url = devreg_worker.url("messaging/registrations")
    async with (
        LiveStream(devreg_worker) as everything,
        LiveStream(devreg_worker, channel=channel) as on_channel,
        LiveStream(devreg_worker, device=f"{channel}-other") as one_device,
        LiveStream(devreg_worker, app_id="app-b") as other_app,
    ):
        for stream in (everything, on_channel, one_device, other_app):
            await stream.ready()
        # When a device of another app registers on the channel, then devices of this app:
        # one on the channel, one not
        b_url = devreg_worker.url("messaging/registrations", app_id="app-b")
        status, _ = await call("POST", b_url, json=registration(f"{channel}-b", channels=[channel]))
        assert status == 200
        for device, channels in ((f"{channel}-on", [channel]), (f"{channel}-other", ["x"])):
            status, _ = await call("POST", url, json=registration(device, channels=channels))
            assert status == 200

        # Then each stream shows what its filter lets through, of its own app only
        def has(device: str) -> Callable[[list[tuple[str, Any]]], bool]:
            return lambda ms: any(
                kind == "message" and data["event"].get("device_id") == device for kind, data in ms
            )

        await other_app.until(has(f"{channel}-b"))
        await everything.until(has(f"{channel}-on"))
        await everything.until(has(f"{channel}-other"))
        await on_channel.until(has(f"{channel}-on"))
        await one_device.until(has(f"{channel}-other"))
        seen = [e.get("device_id") or e.get("channel") for e in on_channel.events()]
        assert f"{channel}-other" not in seen
        # (the other app's event was in the log before these were even sent)
        assert {e["app_id"] for s in (everything, on_channel, one_device) for e in s.events()} == {
            "app-a"
        }
        assert {e["app_id"] for e in other_app.events()} == {"app-b"}
        assert {e.get("device_id") for e in one_device.events()} == {f"{channel}-other"}
        # And every line carries its place in the log and the event as in the log
        line = next(d for k, d in everything.messages if k == "message")
        assert {"partition", "offset", "timestamp", "event"} <= set(line)
        assert len(line["event"]["hash"]) == 64


async def test_given_the_console_then_its_files_with_a_strict_policy_and_nothing_else(
    devreg_worker: WorkerProcess,
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{devreg_worker.base_url}/console") as page:
            assert page.status == 200
            assert page.content_type == "text/html"
            policy = page.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy
            assert "default-src 'none'" in policy
            assert "unsafe-inline" not in policy
            assert page.headers["X-Content-Type-Options"] == "nosniff"
            html = await page.text()
        assert '<script type="module" src="/console/app.js">' in html
        assert "<script>" not in html  # no inline script: the policy would refuse it anyway
        async with session.get(f"{devreg_worker.base_url}/console/app.js") as script:
            assert (script.status, script.content_type) == (200, "text/javascript")
        for path in (
            "nope.js",
            "../api.py",
            "%2e%2e/api.py",
            "..%2F..%2Fpyproject.toml",
            "serve.py",
        ):
            async with session.get(f"{devreg_worker.base_url}/console/{path}") as missing:
                assert missing.status in (400, 404), path
                assert (await missing.json())["code"] in (5002, 404), path
