"""Audit against a real worker: verify, as-of, history, publish, topics, rebuild under load.

One worker serves the module; a scripted mix of registrations, re-registrations,
unregistrations and an expiry runs once, recording what GET answered at three instants. Tests
run in file order: the last one stops the worker to tamper with its projection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import aiohttp
import msgspec
import pytest

from events import sealed
from projections.device_lookup import DeviceView
from projections.store import ProjectionStore
from services.config import load_settings
from services.http import wire
from services.keys.snapshot import read_snapshot
from services.log.broker import EmbeddedBroker
from tests.support import WorkerProcess, call, devreg, now_ms, registration, wait_for

DEVICES = ("a1", "a2", "a3", "brief", "late")


def json_lines(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


async def get_body(worker: WorkerProcess, device_id: str) -> Any:
    """What GET answers: the registration list, or the Backendless error code."""
    status, body = await call("GET", worker.url(f"messaging/registrations/{device_id}"))
    return body if status == 200 else body["code"]


async def register(worker: WorkerProcess, device_id: str, **fields: Any) -> None:
    status, body = await call(
        "POST", worker.url("messaging/registrations"), json=registration(device_id, **fields)
    )
    assert status == 200, body


async def unregister(worker: WorkerProcess, device_id: str, query: str = "") -> None:
    status, body = await call("DELETE", worker.url(f"messaging/registrations/{device_id}{query}"))
    assert status == 200, body


class Scenario(msgspec.Struct):
    worker: WorkerProcess
    seen: list[tuple[int, dict[str, Any]]]  # (instant, device id -> GET answer)


async def observe(scenario: Scenario) -> None:
    bodies = {device_id: await get_body(scenario.worker, device_id) for device_id in DEVICES}
    at = now_ms()
    scenario.seen.append((at, bodies))
    await wait_for(lambda: now_ms() > at, 1, "the clock to pass the instant seen")  # so the
    # next command's time is later than `at`, not in the same millisecond


@pytest.fixture(scope="module")
async def scenario(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Scenario]:
    worker = WorkerProcess(tmp_path_factory.mktemp("audit") / "data", broker.bootstrap)
    await worker.start()
    done = Scenario(worker, [])
    try:
        # t1: three registrations
        await register(worker, "a1", channels=["news", "sports"])
        await register(worker, "a2", channels=["news"])
        await register(worker, "a3")
        await observe(done)
        # t2: a re-registration (new token, one more channel), a partial and a full
        # unregistration, and a registration about to expire
        await register(worker, "a1", channels=["weather"], deviceToken="token-a1-new")
        await unregister(worker, "a2", "?channels=news")
        await unregister(worker, "a3")
        await register(worker, "brief", channels=["news"], expiration=now_ms() + 2000)
        await observe(done)
        # t3: once it has expired
        expired = partial(answers, worker, "brief", lambda body: body == 5000)
        await wait_for(expired, 10, "the registration to expire")
        await observe(done)
        await register(worker, "late", channels=["news"])
        yield done
    finally:
        await worker.stop()


async def answers(worker: WorkerProcess, device_id: str, expected: Callable[[Any], bool]) -> bool:
    return expected(await get_body(worker, device_id))


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_given_a_scripted_history_when_verified_then_it_passes(
    scenario: Scenario, processes: str
) -> None:
    # When verify folds the log (in one process, or two) and compares, the worker running
    code, out, err = await devreg(scenario.worker, "verify", "--quiet", "--processes", processes)
    # Then it passes
    assert code == 0, (out, err)
    [summary] = json_lines(out)
    assert summary["verdict"] == "pass"
    assert summary["events"] >= 9
    assert (summary["differences"], summary["chain_problems"]) == (0, 0)


async def test_given_instants_seen_live_when_as_of_then_the_same_states(
    scenario: Scenario, tmp_path: Any
) -> None:
    app_id = scenario.worker.app_id
    # The file holds tokens sealed, as the log does: opened with the keys, as GET opens them.
    settings = load_settings(scenario.worker.environment())
    keys = await read_snapshot(settings, settings.kafka_at(scenario.worker.bootstrap or ""))
    assert keys is not None
    for number, (at, bodies) in enumerate(scenario.seen):
        # When the registry as of that instant is written to a file
        out = tmp_path / f"as-of-{number}.sqlite"
        code, _, err = await devreg(scenario.worker, "as-of", str(at), "--out", str(out), "--quiet")
        assert code == 0, err

        # Then the live query on that file, at that instant, answers what GET answered then
        store = await ProjectionStore.open(out, swappable=False)
        try:
            for device_id, body in bodies.items():
                view = await store.get_device(app_id, device_id, at)
                if view is not None:
                    token = keys.open(app_id, device_id, "device_token", view.device_token)
                    view = msgspec.structs.replace(view, device_token=token)
                answer = msgspec.to_builtins(wire.device_body(view)) if view else 5000
                assert answer == body, (number, device_id)
        finally:
            await store.close()

    # And the one-device and one-channel forms agree with it
    at, bodies = scenario.seen[1]
    code, out, err = await devreg(
        scenario.worker, "as-of", str(at), "--app", app_id, "--device", "a1", "--quiet"
    )
    assert code == 0, err
    view = msgspec.convert(json.loads(out)["device"], DeviceView)
    assert msgspec.to_builtins(wire.device_body(view)) == bodies["a1"]
    code, out, err = await devreg(
        scenario.worker, "as-of", str(at), "--app", app_id, "--channel", "news", "--quiet"
    )
    assert code == 0, err
    assert [d["deviceId"] for d in json.loads(out)["devices"]] == ["a1", "brief"]


async def test_given_a_device_when_its_history_is_read_then_the_chain_is_intact(
    scenario: Scenario,
) -> None:
    code, out, err = await devreg(scenario.worker, "history", scenario.worker.app_id, "a1")
    assert code == 0, err
    found = json.loads(out)
    assert found["chain"]["intact"] is True
    device_events = [e for e in found["events"] if e["status"] == "applied"]
    assert [e["event"]["version"] for e in device_events] == [1, 2]
    assert all(e["hash_ok"] for e in found["events"])
    assert found["chain"]["last_hash"] == device_events[-1]["event"]["hash"]


async def test_given_a_command_as_json_when_published_then_its_outcome_is_printed(
    scenario: Scenario,
) -> None:
    worker = scenario.worker
    command: dict[str, Any] = {"type": "register-device/1", "app_id": worker.app_id}
    command |= {"device_id": "published", "device_token": "t", "os": "IOS", "os_version": "17"}
    command["channels"] = ["alerts"]
    code, out, err = await devreg(worker, "publish", stdin=json.dumps(command).encode())
    assert code == 0, err
    outcome = json.loads(out)
    assert outcome["accepted"] is True
    assert list(outcome["registration_ids"]) == ["alerts"]
    visible = partial(answers, worker, "published", lambda body: isinstance(body, list))
    await wait_for(visible, 10, "the published device to be visible")

    # And a command the processor rejects exits 1 with the Backendless code
    command.update(device_id="expired", expiration=1000)
    code, out, err = await devreg(worker, "publish", stdin=json.dumps(command).encode())
    assert code == 1, err
    assert (json.loads(out)["accepted"], json.loads(out)["code"]) == (False, 5004)


async def test_given_the_worker_topics_when_described_then_partitions_and_offsets(
    scenario: Scenario,
) -> None:
    code, out, err = await devreg(scenario.worker, "topics", "--create")
    assert code == 0, err
    report = json.loads(out)
    prefix = scenario.worker.prefix
    for name in ("commands", "events", "outcomes"):
        topic = report["topics"][f"{prefix}.{name}"]
        assert (topic["exists"], topic["partitions"], len(topic["offsets"])) == (True, 3, 3)
    assert report["topics"][f"{prefix}.events"]["records"] > 0
    assert "under-reports" in report["note"]


async def test_given_queries_and_writes_when_rebuilt_then_no_query_fails_during_the_swap(
    scenario: Scenario,
) -> None:
    worker = scenario.worker
    live = worker.data_dir / "projection.sqlite"
    before = os.stat(live).st_ino
    stop, failures, answered = asyncio.Event(), [], [0]

    async def query_loop() -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    async with session.get(worker.url("messaging/registrations/a1")) as response:
                        if response.status != 200:
                            failures.append(f"{response.status} {await response.text()}")
                except aiohttp.ClientError as exc:
                    failures.append(repr(exc))
                answered[0] += 1

    async def write_loop() -> None:
        number = 0
        while not stop.is_set():
            await register(worker, f"during-{number}")  # keeps the projector busy
            number += 1

    # Given queries and registrations running all along
    loops = [asyncio.ensure_future(query_loop()) for _ in range(3)]
    loops.append(asyncio.ensure_future(write_loop()))
    try:
        # When the projection is rebuilt by two processes and swapped in under the worker
        code, out, err = await devreg(worker, "rebuild", "--quiet", "--processes", "2")
    finally:
        stop.set()
        await asyncio.gather(*loops)

    # Then the swap happened, and not one query failed
    assert code == 0, err
    assert (json.loads(out)["mode"], json.loads(out)["processes"]) == ("online", 2)
    assert "swapped in the rebuilt projection" in worker.log()
    assert os.stat(live).st_ino != before
    assert failures == []
    assert answered[0] > 0
    # with the live schema's indexes: the history's unique one is built after the load
    with contextlib.closing(sqlite3.connect(f"file:{live}?mode=ro", uri=True)) as db:
        indexes = {row[1]: row[2] for row in db.execute("PRAGMA index_list(device_events)")}
    assert indexes == {"device_events_by_device": 1}

    # And an offline rebuild refuses to replace the file under the running worker
    code, _, err = await devreg(worker, "rebuild", "--offline", "--quiet")
    assert (code, "is in use" in err) == (2, True)
    # And the worker goes on applying into the new file, which still equals the log
    await register(worker, "after-swap")
    assert isinstance(await get_body(worker, "after-swap"), list)
    code, out, err = await devreg(worker, "verify", "--quiet")
    assert code == 0, (out, err)


async def test_given_a_tampered_row_when_verified_then_it_fails_naming_the_row(
    scenario: Scenario,
) -> None:
    worker = scenario.worker
    live = worker.data_dir / "projection.sqlite"
    # Given a projection row changed behind devreg's back, the worker stopped
    assert await worker.stop() == 0
    with contextlib.closing(sqlite3.connect(live)) as db, db:
        db.execute("UPDATE devices SET device_token = 'tampered' WHERE device_id = 'a1'")

    # When verified, the log folded by two processes
    code, out, err = await devreg(worker, "verify", "--quiet", "--processes", "2")

    # Then it fails and names the table, the key, and both versions of the row
    assert code == 1, err
    lines = json_lines(out)
    [difference] = [line for line in lines if line["kind"] == "row"]
    assert difference["table"] == "devices"
    assert difference["key"] == {"app_id": worker.app_id, "device_id": "a1"}
    assert difference["live"]["device_token"] == "tampered"
    assert sealed.is_sealed(difference["rebuilt"]["device_token"])  # as the log holds it
    assert lines[-1]["verdict"] == "fail"

    # And an online rebuild finds no worker to swap under; an offline one repairs the file
    code, _, err = await devreg(worker, "rebuild", "--wait", "1", "--quiet")
    assert (code, "no worker answered" in err) == (2, True)
    code, out, err = await devreg(worker, "rebuild", "--offline", "--quiet")
    assert code == 0, err
    assert json.loads(out)["mode"] == "offline"
    code, out, err = await devreg(worker, "verify", "--quiet")
    assert code == 0, (out, err)
