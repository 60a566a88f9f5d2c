"""`devreg run` reads its data keys on from where its key store got to, not from 0 at every
start, and no restart, however abrupt, gives a forgotten device's key back
(docs/design.md §10 item 2, §12)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from events import sealed
from services.log.broker import free_port
from tests.integration.token_support import admin
from tests.support import WorkerProcess, admin_headers, call, now_ms, registration

DEVICES = 40


def embedded(data: Path) -> WorkerProcess:
    env = {"DEVREG_BROKER_PORT": str(free_port())}
    return WorkerProcess(data, None, command="run", env=env, own_group=True)


def keys_read(run: WorkerProcess) -> int:
    """How many key records the latest start read (its INFO line)."""
    found = re.findall(rf"read (\d+) records of {re.escape(run.prefix)}\.keys", run.log())
    assert found, run.log()
    return int(found[-1])


def stored_keys(data: Path, device_id: str) -> int:
    with sqlite3.connect(data / "keys.sqlite") as conn:
        [(count,)] = conn.execute(
            "SELECT count(*) FROM device_keys WHERE device_id = ?", (device_id,)
        ).fetchall()
    return int(count)


async def register(run: WorkerProcess, names: list[str]) -> None:
    for name in names:
        status, body = await call("POST", run.url("messaging/registrations"), registration(name))
        assert status == 200, body


async def tokens_open(run: WorkerProcess, names: list[str]) -> None:
    for name in names:
        status, body = await call("GET", run.url(f"messaging/registrations/{name}"))
        assert status == 200, body
        assert body[0]["deviceToken"] == f"token-{name}", name


async def test_given_a_registry_when_restarted_then_it_reads_only_the_keys_written_since(
    tmp_path: Path,
) -> None:
    # Given `devreg run` with DEVICES registrations (a data key each), stopped cleanly
    data = tmp_path / "data"
    run = embedded(data)
    await run.start()
    try:
        first = [f"kept-{n}" for n in range(DEVICES)]
        await register(run, first)
        assert keys_read(run) == 0
        assert await run.stop() == 0

        # When it is started again
        await run.start()

        # Then it read none of their key records again, and every token still opens
        assert keys_read(run) == 0
        await tokens_open(run, first)

        # And after more registrations and a SIGKILL of the whole process group, it reads
        # at most the keys written since the last position was claimed, not all of them
        more = [f"more-{n}" for n in range(DEVICES)]
        await register(run, more)
        await run.kill_group()
        await run.start()
        assert keys_read(run) < DEVICES
        await tokens_open(run, first + more)
        assert "DISCARDED" not in run.log()
    finally:
        await run.stop()


async def forgotten(run: WorkerProcess, data: Path, name: str, registered_at: int) -> None:
    """The device is gone, what it held shows erased, and its key is in no key store."""
    status, body = await call("GET", run.url(f"messaging/registrations/{name}"))
    assert (status, body["code"]) == (400, 5000), body
    as_of = run.admin_url(f"messaging/registrations/{name}/as-of/{registered_at}")
    status, body = await call("GET", as_of, headers=admin_headers())
    assert (status, body[0]["deviceToken"]) == (200, sealed.ERASED), body
    assert stored_keys(data, name) == 0


async def test_given_a_forget_answered_when_killed_then_a_restart_keeps_the_key_erased(
    tmp_path: Path,
) -> None:
    # Given `devreg run` with registrations, restarted once so its key store has positions
    data = tmp_path / "data"
    run = embedded(data)
    await run.start()
    try:
        names = [f"dev-{n}" for n in range(DEVICES)]
        await register(run, names)
        # an instant when every one was registered: taken before the restart, since a forget
        # answered within the same millisecond would otherwise count as already done by then
        registered_at = now_ms()
        assert await run.stop() == 0
        await run.start()

        # When a device is forgotten and the process group is SIGKILLed the moment the
        # forget is answered
        status, body = await admin(run, "POST", f"devices/{names[0]}/forget")
        assert (status, body["changed"]) == (200, True), body
        await run.kill_group()

        # Then after a restart the device stays erased and its key is in no store
        await run.start()
        await forgotten(run, data, names[0], registered_at)

        # And when another is forgotten and new keys are made behind its tombstone (new
        # devices on every partition) before the kill, it stays erased too
        status, body = await admin(run, "POST", f"devices/{names[1]}/forget")
        assert (status, body["changed"]) == (200, True), body
        await register(run, [f"new-{n}" for n in range(DEVICES // 2)])
        await run.kill_group()
        await run.start()
        await forgotten(run, data, names[0], registered_at)
        await forgotten(run, data, names[1], registered_at)
        await tokens_open(run, names[2:] + [f"new-{n}" for n in range(DEVICES // 2)])
        assert "DISCARDED" not in run.log()
    finally:
        await run.stop()
