"""An expiry burst watched through the log, and the moments to kill the worker during it
(tests/integration/test_expiry_crash.py)."""

from __future__ import annotations

import sqlite3
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from events import (
    ExpireRegistrations,
    RegisterDevice,
    RegistrationExpired,
    decode_command,
    decode_event,
    decode_outcome,
)
from projections.positions import Record
from tests.log_checks import LogTail, committed
from tests.support import APPS, WorkerProcess, now_ms, sized, wait_for
from tests.topics import publish_commands

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
