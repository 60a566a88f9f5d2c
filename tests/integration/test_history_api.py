"""A device's history and its registration as of a time, over HTTP."""

from __future__ import annotations

import uuid

from tests.support import WorkerProcess, admin_headers, call, now_ms, registration, wait_for


async def test_given_a_device_history_then_paged_events_and_past_states(
    devreg_worker: WorkerProcess,
) -> None:
    # Given a device registered on news, then on sport with a new token, then unregistered
    device = f"hist-{uuid.uuid4().hex[:8]}"
    url = devreg_worker.url("messaging/registrations")
    moments = []
    for body in (
        registration(device, channels=["news"], deviceToken="t1"),
        registration(device, channels=["sport"], deviceToken="t2"),
    ):
        status, _ = await call("POST", url, json=body)
        assert status == 200
        moments.append(now_ms())
        # An as-of instant includes every event of its millisecond: the next command must
        # land in a later millisecond for the moment to name exactly this state.
        await wait_for(lambda: now_ms() > moments[-1], what="the next millisecond")
    status, _ = await call("DELETE", f"{url}/{device}")
    assert status == 200

    # When its history is read two events at a time
    pages, after = [], 0
    while True:
        status, page = await call(
            "GET", f"{url}/{device}/history?limit=2&after={after}", headers=admin_headers()
        )
        assert status == 200, page
        pages.append(page["events"])
        if page["nextAfter"] is None:
            break
        after = page["nextAfter"]

    # Then it is the whole chain, in version order, each event as in the log
    events = [e for page in pages for e in page]
    assert [e["version"] for e in events] == [1, 2, 3]
    assert [e["type"] for e in events] == [
        "device-registered/1",
        "device-registered/1",
        "device-unregistered/1",
    ]
    assert [e["prev_hash"] for e in events[1:]] == [e["hash"] for e in events[:-1]]

    # And as-of answers as GET did at each moment, and 5000 before and after
    admin = admin_headers()
    status, first = await call("GET", f"{url}/{device}/as-of/{moments[0]}", headers=admin)
    assert status == 200, first
    assert (first[0]["deviceToken"], first[0]["channels"]) == ("t1", ["news"])
    status, second = await call("GET", f"{url}/{device}/as-of/{moments[1]}", headers=admin)
    assert status == 200, second
    assert (second[0]["deviceToken"], second[0]["channels"]) == ("t2", ["news", "sport"])
    for instant in ("2000-01-01T00:00:00Z", str(now_ms() + 1)):
        status, body = await call("GET", f"{url}/{device}/as-of/{instant}", headers=admin)
        assert (status, body["code"]) == (400, 5000), instant


async def test_given_bad_history_parameters_then_backendless_errors(
    devreg_worker: WorkerProcess,
) -> None:
    url = devreg_worker.url("messaging/registrations/nobody")
    for path in ("/history", "/as-of/yesterday", "/history?limit=0", "/history?after=-1"):
        status, body = await call("GET", url + path, headers=admin_headers())
        assert status == 400, path
        assert body["code"] in (5000, 5002), path
    status, body = await call(
        "GET",
        devreg_worker.url("messaging/registrations/x/history", key="k"),
        None,
        admin_headers(),
    )
    assert (status, body["code"]) == (401, 8002)
