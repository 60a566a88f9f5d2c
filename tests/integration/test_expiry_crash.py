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
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from events import (
    ExpireRegistrations,
    RegisterDevice,
    RegistrationExpired,
    decode_command,
    decode_event,
    decode_outcome,
)
from projections.positions import Record
from services.log.broker import EmbeddedBroker
from tests.log_checks import LogTail, assert_chains, committed
from tests.support import APPS, WorkerProcess, devreg, now_ms, publish_commands, sized, wait_for

APP = next(iter(APPS))
DEVICES = sized(test=3000, soak=50_000)
LEAD_MS = sized(test=4000, soak=60_000)  # registered well before they fall due...
SPREAD_MS = 200  # ...and all due within 200 ms of each other
# The second half falls due this much later, once the worker killed during the first half is
# back: its commit can then be stalled before its first batch is decided (StalledCommits).
WAVE_GAP_MS = sized(test=15_000, soak=60_000)
LOCK_LEAD_MS = 2_000  # the commit is stalled this long before the second wave is due
DEADLINE_S = sized(test=90, soak=900)


class Burst:
    """What the log says about the burst so far, updated as the tail reads it."""

    def __init__(self, prefix: str):
        self.commands, self.events = f"{prefix}.commands", f"{prefix}.events"
        self.outcomes = f"{prefix}.outcomes"
        self.topics = (self.commands, self.events, self.outcomes)
        self.expiry_commands = 0  # ExpireRegistrations records, repeats included
        self.expiry_devices = 0  # the devices they name, repeats included
        self.unanswered: set[str] = set()  # command ids in the log without an outcome (yet)
        self.answered: set[str] = set()
        self.first_sent: dict[str, tuple[int, int]] = {}  # command id -> (partition, offset)
        self.expired: set[str] = set()  # devices with a RegistrationExpired in the log
        self.latest: deque[str] = deque(maxlen=200)  # the latest expiry events' command ids

    def seen(self, record: Record) -> None:
        if record.topic == self.commands:
            command = decode_command(record.value or b"")
            if command.command_id not in self.answered:
                self.unanswered.add(command.command_id)
            if isinstance(command, ExpireRegistrations):
                self.expiry_commands += 1
                self.expiry_devices += len(command.devices)
                self.first_sent.setdefault(command.command_id, (record.partition, record.offset))
        elif record.topic == self.events:
            event = decode_event(record.value or b"")
            if isinstance(event, RegistrationExpired):
                self.expired.add(event.device_id)
                self.latest.append(event.command_id)
        else:
            command_id = decode_outcome(record.value or b"").command_id
            self.answered.add(command_id)
            self.unanswered.discard(command_id)

    def undecided_in_log(self, data_dir: Path) -> bool:
        """Expiry events are in the log whose command the processor has not yet committed as
        decided: a crash now makes it decide that command again and re-emit the events."""
        decided = committed(data_dir / "decisions.sqlite", self.commands)
        sent = (self.first_sent.get(command_id) for command_id in self.latest)
        return any(s is not None and s[1] >= decided.get(s[0], 0) for s in sent)


Watched = tuple[Burst, LogTail]


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


async def publish_registrations(bootstrap: str, topic: str) -> dict[str, int]:
    """DEVICES registrations on channel "burst", in two waves of expirations (each within
    SPREAD_MS, WAVE_GAP_MS apart); returns each device's expiration."""
    issued_at = now_ms()
    due = {f"exp-{i:05d}": issued_at + LEAD_MS + i % SPREAD_MS for i in range(DEVICES // 2)}
    due |= {
        f"exp-{i:05d}": issued_at + LEAD_MS + WAVE_GAP_MS + i % SPREAD_MS
        for i in range(DEVICES // 2, DEVICES)
    }
    commands = (
        RegisterDevice(
            command_id=uuid.uuid4().hex,
            app_id=APP,
            device_id=device_id,
            issued_at=issued_at,
            device_token=f"tok-{device_id}",
            os="ANDROID",
            os_version="14",
            channels=("burst",),
            expiration=expiration,
        )
        for device_id, expiration in due.items()
    )
    await publish_commands(bootstrap, topic, commands)
    return due


async def kill_when(
    worker: WorkerProcess,
    watched: Watched,
    moment: Callable[[], Awaitable[bool]],
    what: str,
    after_kill: Callable[[], None] = lambda: None,
) -> tuple[bool, bool]:
    """SIGKILL the worker at `moment`, unless the burst is over by then; restart it (after
    `after_kill`). Returns whether the kill left expiries missing from the log, and whether it
    left expiry events in the log whose commands were not committed as decided."""
    burst, tail = watched

    async def now() -> bool:
        await tail.poll()
        return len(burst.expired) == DEVICES or await moment()

    await wait_for(now, DEADLINE_S, f"the moment to kill {what}")
    if len(burst.expired) == DEVICES:
        return False, False
    await worker.kill()
    await tail.drain(DEADLINE_S)  # the log as the dead worker left it
    landed = len(burst.expired) < DEVICES, burst.undecided_in_log(worker.data_dir)
    print(f"killed {what}: {burst.expiry_commands} expiry commands sent, ", end="")
    print(f"{len(burst.expired)} devices expired, undecided events in the log: {landed[1]}")
    after_kill()
    await worker.start()
    return landed


def publishing(burst: Burst) -> Callable[[], Awaitable[bool]]:
    """The moment the first expiry command is in the log: the scheduler is publishing."""

    async def moment() -> bool:
        return burst.expiry_commands > 0

    return moment


class StalledCommits:
    """The moment, in the second wave of the burst, when expiry events are in the log whose
    commands the processor has not committed as decided: made, not hunted for. The test takes
    the decision store's write lock (a disk that stalls the commit) just before the second wave
    is due, once the first is answered; the processor's first batch of it is then acknowledged
    by Kafka, its events in the log, and its commit waits for the lock. Probing a running
    worker for that window missed it: a fast worker commits within a millisecond of the
    acknowledgement (a clean-clone CI run failed), and a command carries hundreds of devices,
    so a wave is a handful of batches, all decided between two looks at the log."""

    def __init__(self, worker: WorkerProcess, watched: Watched, second_due: int):
        self.worker, (self.burst, self.tail) = worker, watched
        self.second_due = second_due  # the second wave's first expiration (ms)
        self.lock: sqlite3.Connection | None = None

    async def moment(self) -> bool:
        if self.lock is None:
            # Only once every command in the log has its outcome: the batch the lock stalls
            # must be the second wave's, whose events are in the log. Taken any earlier, it
            # stalled a batch of re-sent first-wave expiries, all stale (no events), and the
            # processor waited behind it with the second wave undecided.
            if now_ms() < self.second_due - LOCK_LEAD_MS or self.burst.unanswered:
                return False
            second = {f"exp-{i:05d}" for i in range(DEVICES // 2, DEVICES)}
            assert not self.burst.expired & second, "the second wave came before the lock"
            self.lock = sqlite3.connect(self.worker.data_dir / "decisions.sqlite", timeout=10)
            self.lock.isolation_level = None
            self.lock.execute("BEGIN IMMEDIATE")  # the write lock, held until released
        await self.tail.drain(DEADLINE_S)
        return self.burst.undecided_in_log(self.worker.data_dir)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()  # the open transaction rolls back: it wrote nothing
            self.lock = None


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
