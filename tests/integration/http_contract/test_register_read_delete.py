"""Register, read and delete: the answers' shapes, ids per channel and app, upserts."""

from __future__ import annotations

import asyncio
import re

from events.identity import registration_id
from tests.integration.http_contract.registration_api import (
    assert_error,
    get_registration,
    new_device,
    register,
    registrations,
)
from tests.support import WorkerProcess, call, registration

UUID_UPPER = r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"


def pairs(registration_id_text: str) -> list[tuple[str, str]]:
    """`"<ID>::<channel>,<ID>::<channel>"` to [(id, channel), ...], checking each id's form."""
    result = []
    for pair in registration_id_text.split(","):
        match = re.fullmatch(rf"({UUID_UPPER})::(.+)", pair)
        assert match is not None, registration_id_text
        result.append((match.group(1), match.group(2)))
    return result


# --- register, read, delete ----------------------------------------------------------------


async def test_given_a_new_device_when_registered_read_deleted_and_read_again_then_it_is_gone(
    devreg_worker: WorkerProcess,
) -> None:
    device = new_device()

    # When it is registered on two channels
    text = await register(devreg_worker, device, channels=["alerts", "news"])
    # Then the answer pairs an upper-case UUID with each channel, in the order named
    assert [channel for _, channel in pairs(text)] == ["alerts", "news"]

    # When it is read
    found = await get_registration(devreg_worker, device)
    # Then it is what was sent, with the first channel's registration id
    assert found == {
        "id": registration_id("app-a", device, "alerts"),
        "deviceId": device,
        "deviceToken": f"token-{device}",
        "os": "ANDROID",
        "osVersion": "14",
        "channels": ["alerts", "news"],
        "expiration": None,
    }

    # When it is deleted
    status, body = await call("DELETE", registrations(devreg_worker, device))
    # Then the answer is exactly a JSON true
    assert (status, body) == (200, {"result": True})

    # When it is read again
    status, body = await call("GET", registrations(devreg_worker, device))
    # Then it is unknown: 5000, Backendless error body
    message = assert_error(status, body, 5000)
    assert device in message


async def test_given_channels_named_when_registering_then_ids_follow_the_named_order(
    devreg_worker: WorkerProcess,
) -> None:
    # Given channels named out of alphabetical order
    device = new_device()
    channels = ["zeta", "alpha", "mid"]

    # When the device registers on them
    text = await register(devreg_worker, device, channels=channels)

    # Then there is one pair per channel, in the order named, with the stable ids
    assert pairs(text) == [(registration_id("app-a", device, c), c) for c in channels]


async def test_given_no_channels_when_registering_then_one_pair_for_default(
    devreg_worker: WorkerProcess,
) -> None:
    device = new_device()

    # When a device registers without naming channels
    text = await register(devreg_worker, device)

    # Then it is registered on "default" only
    assert pairs(text) == [(registration_id("app-a", device, "default"), "default")]
    assert (await get_registration(devreg_worker, device))["channels"] == ["default"]


async def test_given_a_post_answered_when_reading_at_once_then_the_write_is_visible(
    devreg_worker: WorkerProcess,
) -> None:
    # Read-your-writes: POST and DELETE answer only once the projection shows their effect.
    for round_ in range(5):
        device = new_device(f"ryw{round_}")
        # When a device is registered, Then a GET right after the answer returns it
        await register(devreg_worker, device, deviceToken=f"t{round_}")
        assert (await get_registration(devreg_worker, device))["deviceToken"] == f"t{round_}"
        # When it is re-registered with a new token, Then a GET right after shows the new one
        await register(devreg_worker, device, deviceToken=f"u{round_}")
        assert (await get_registration(devreg_worker, device))["deviceToken"] == f"u{round_}"
        # When it is deleted, Then a GET right after no longer finds it
        status, body = await call("DELETE", registrations(devreg_worker, device))
        assert (status, body) == (200, {"result": True})
        status, body = await call("GET", registrations(devreg_worker, device))
        assert_error(status, body, 5000)


async def test_given_concurrent_posts_for_one_device_when_all_answered_then_all_channels_stay(
    devreg_worker: WorkerProcess,
) -> None:
    # Given one device registering on 20 channels in 20 concurrent requests
    device = new_device()
    channels = [f"c{i:02d}" for i in range(20)]
    answers = await asyncio.gather(
        *(
            call("POST", registrations(devreg_worker), json=registration(device, channels=[c]))
            for c in channels
        )
    )

    # Then every request succeeds and no upsert lost another's channel
    assert [status for status, _ in answers] == [200] * len(channels), answers
    assert (await get_registration(devreg_worker, device))["channels"] == channels


async def test_given_a_registered_device_when_registering_again_then_it_is_an_upsert(
    devreg_worker: WorkerProcess,
) -> None:
    # Given a device on channels a and b
    device = new_device()
    first = await register(
        devreg_worker,
        device,
        deviceToken="old-token",
        os="ANDROID",
        osVersion="13",
        channels=["a", "b"],
    )

    # When it registers again on channel c with a new token, os and os version
    second = await register(
        devreg_worker, device, deviceToken="new-token", os="IOS", osVersion="17", channels=["c"]
    )

    # Then token, os and os version are replaced and a, b stay beside c
    found = await get_registration(devreg_worker, device)
    assert found["deviceToken"] == "new-token"
    assert found["os"] == "IOS"
    assert found["osVersion"] == "17"
    assert found["channels"] == ["a", "b", "c"]
    # And the answer names only the channels of this call
    assert [c for _, c in pairs(second)] == ["c"]
    # And registering on a again gives a its first id back
    again = await register(devreg_worker, device, channels=["a"])
    assert pairs(again) == [pairs(first)[0]]


async def test_given_one_device_id_when_registered_under_two_apps_then_ids_are_per_app(
    devreg_worker: WorkerProcess,
) -> None:
    device = new_device()

    # When the same device id registers on the same channel under app-a twice and app-b once
    first_a = await register(devreg_worker, device, channels=["news"])
    second_a = await register(devreg_worker, device, channels=["news"], deviceToken="other")
    in_b = await register(devreg_worker, device, app_id="app-b", channels=["news"])

    # Then the id is stable per (app, device, channel) and differs between apps
    assert first_a == second_a == f"{registration_id('app-a', device, 'news')}::news"
    assert in_b == f"{registration_id('app-b', device, 'news')}::news"
    assert first_a != in_b


# --- delete ------------------------------------------------------------------------------


async def test_given_a_device_on_two_channels_when_deleting_one_then_the_other_stays(
    devreg_worker: WorkerProcess,
) -> None:
    device = new_device()
    await register(devreg_worker, device, channels=["a", "b"])

    status, body = await call("DELETE", registrations(devreg_worker, device) + "?channels=a")

    assert (status, body) == (200, {"result": True})
    found = await get_registration(devreg_worker, device)
    assert found["channels"] == ["b"]
    assert found["id"] == registration_id("app-a", device, "b")


async def test_given_an_unknown_device_when_deleting_then_5001(
    devreg_worker: WorkerProcess,
) -> None:
    device = new_device()
    status, body = await call("DELETE", registrations(devreg_worker, device))
    assert device in assert_error(status, body, 5001)
