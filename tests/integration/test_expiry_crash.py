"""SIGKILL the worker during an expiry burst: once while the scheduler publishes its
ExpireRegistration commands, once while their events are being decided and projected. After
the restarts every device has expired exactly once in effect, and the log proves it.

The mechanisms under test: the scheduler keeps no state (the projection is its state), so
after a restart it sends again whatever is still due, as commands of many devices
(`expire-registrations/1`) whose ids come from what they carry; the command processor answers
a repeat with the first outcome, and decides each device of a command on its own state (one
expired already is a no-op); a command re-decided after a crash re-emits byte-identical
events (ids from each device's expiry, time from the command); every reader skips a version
it already holds.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from events import (
    ExpireRegistrations,
    RegistrationExpired,
    decode_command,
    decode_event,
    decode_outcome,
)
from services.log.broker import EmbeddedBroker
from tests.integration.expiry_burst import (
    DEADLINE_S,
    DEVICES,
    Burst,
    StalledCommits,
    Watched,
    kill_when,
    publish_registrations,
    publishing,
)
from tests.log_checks import LogTail, assert_chains, committed
from tests.support import WorkerProcess, devreg, wait_for


@pytest.fixture
async def worker(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    # Small batches: more places for a kill to land.
    process = WorkerProcess(tmp_path / "data", broker.bootstrap, env={"DEVREG_BATCH_SIZE": "50"})
    await process.start()
    yield process
    await process.stop()


@pytest.fixture
async def watched(broker: EmbeddedBroker, worker: WorkerProcess) -> AsyncIterator[Watched]:
    burst = Burst(worker.prefix)
    tail = LogTail(broker.bootstrap, burst.topics, burst.seen)
    await tail.start()
    yield burst, tail
    await tail.stop()


async def test_given_an_expiry_burst_when_the_worker_is_killed_then_each_device_expires_once(
    worker: WorkerProcess, watched: Watched
) -> None:
    # Given thousands of registrations whose expirations fall due in two waves, each within
    # 200 ms
    burst, tail = watched
    due = await publish_registrations(worker.bootstrap or "", burst.commands)

    # When the worker is SIGKILLed as the scheduler starts publishing the first wave's expiry
    # commands, and again while the second wave's expiry events are being decided: in the
    # log, not yet committed as decided
    stalled = StalledCommits(worker, watched, min(list(due.values())[DEVICES // 2 :]))
    try:
        kills = [
            await kill_when(worker, watched, publishing(burst), "while publishing"),
            await kill_when(worker, watched, stalled.moment, "while expiring", stalled.release),
        ]
    finally:
        stalled.release()
    assert any(unfinished for unfinished, _ in kills), "no kill landed before the burst ended"

    # Then every device expires; once the projection has applied the whole log, nothing is
    # due, so every expiry command the scheduler sent is in the log, and gets its outcome
    await tail.until(lambda: len(burst.expired) == DEVICES, DEADLINE_S, "every expiry")
    await tail.drain(DEADLINE_S)
    events = [r.value or b"" for r in tail.records[burst.events]]
    await wait_for(
        lambda: _applied(worker.data_dir, burst.events) >= len(events),
        DEADLINE_S,
        "the projection to apply every event",
    )
    await tail.until(lambda: not burst.unanswered, DEADLINE_S, "an outcome for every command")
    await tail.drain(DEADLINE_S)
    assert burst.expiry_devices > DEVICES, "no expiry was sent again after a restart"
    assert burst.expiry_commands < DEVICES // 10, "expiries not carried many to a command"

    # And per device one RegistrationExpired in effect: its copies in the log share its id
    # and its bytes
    copies: dict[str, set[bytes]] = defaultdict(set)  # event id -> its copies
    for raw in events:
        copies[decode_event(raw).event_id].add(raw)
    assert all(len(variants) == 1 for variants in copies.values())
    unique = [decode_event(next(iter(v))) for v in copies.values()]
    expired = [e for e in unique if isinstance(e, RegistrationExpired)]
    assert sorted(e.device_id for e in expired) == sorted(due)  # one event id per device
    expiries = {e.device_id: e for e in expired}
    assert {d: (e.expiration, e.channels) for d, e in expiries.items()} == {
        d: (expiration, ("burst",)) for d, expiration in due.items()
    }
    resent, reemitted = burst.expiry_devices - DEVICES, len(events) - len(copies)
    print(f"{burst.expiry_commands} expiry commands, {resent} expiries sent again,", end=" ")
    print(f"{reemitted} events re-emitted")
    assert kills[1][1], "the kill while expiring found no undecided expiry event in the log"
    assert reemitted > 0, "a kill left undecided events in the log, none was re-emitted"

    # And every command has one outcome (copies identical): an expiry command sent again was
    # answered with the first outcome, and each device's one RegistrationExpired is listed by
    # exactly one outcome; every other mention of the device in a command is a stale no-op
    outcomes: dict[str, set[bytes]] = defaultdict(set)  # command id -> its outcome copies
    for record in tail.records[burst.outcomes]:
        outcomes[decode_outcome(record.value or b"").command_id].add(record.value or b"")
    commands = [decode_command(r.value or b"") for r in tail.records[burst.commands]]
    assert set(outcomes) == {c.command_id for c in commands}
    assert all(len(variants) == 1 for variants in outcomes.values())
    decided = [decode_outcome(next(iter(v))) for v in outcomes.values()]
    assert all(o.accepted for o in decided)
    expiry_commands = {c.command_id: c for c in commands if isinstance(c, ExpireRegistrations)}
    listed = [i for o in decided if o.command_id in expiry_commands for i in o.event_ids]
    assert sorted(listed) == sorted(e.event_id for e in expiries.values())
    device_of = {e.event_id: d for d, e in expiries.items()}
    for outcome in (o for o in decided if o.command_id in expiry_commands):
        named = [d.device_id for d in expiry_commands[outcome.command_id].devices]
        expired_here = [device_of[i] for i in outcome.event_ids]
        assert sorted([*expired_here, *outcome.stale]) == sorted(named)

    # And per device, versions are gapless and the hash chain is intact
    assert_chains(unique)

    # And no device is served any more, and the projection equals a rebuild from the log
    assert _projected(worker.data_dir) == {"versions": {2: DEVICES}, "subscriptions": 0}
    assert await _served(worker, sorted(due)) == []
    code, out, err = await devreg(worker, "verify", "--quiet", deadline_s=DEADLINE_S)
    assert code == 0, (out, err)


async def _served(worker: WorkerProcess, device_ids: list[str]) -> list[str]:
    """The devices GET still answers with a registration."""
    served: list[str] = []
    limit = asyncio.Semaphore(16)

    async def get(session: aiohttp.ClientSession, device_id: str) -> None:
        async with limit, session.get(worker.url(f"messaging/registrations/{device_id}")) as r:
            body = await r.json(content_type=None)
            if r.status != 400 or body["code"] != 5000:
                served.append(device_id)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(get(session, d) for d in device_ids))
    return served


def _applied(data_dir: Path, topic: str) -> int:
    return sum(committed(data_dir / "projection.sqlite", topic).values())


def _projected(data_dir: Path) -> dict[str, object]:
    with sqlite3.connect(f"file:{data_dir / 'projection.sqlite'}?mode=ro", uri=True) as db:
        versions = db.execute("SELECT version, COUNT(*) FROM devices GROUP BY version")
        subscriptions = db.execute("SELECT COUNT(*) FROM subscriptions").fetchone()[0]
        return {"versions": dict(versions.fetchall()), "subscriptions": subscriptions}
