"""SIGKILL the worker mid-stream, repeatedly: every command ends with one effect, the log's
re-emitted duplicates are byte-identical, and the projection equals a fold of the log."""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from events import (
    AnyCommand,
    AnyEvent,
    ChannelCreated,
    Outcome,
    RegisterDevice,
    UnregisterDevice,
    decode_command,
    decode_event,
    decode_outcome,
    empty_state,
    encode,
    evolve,
)
from projections.store import ProjectionStore
from services.log.broker import EmbeddedBroker
from tests.log_checks import LogTail, assert_chains, committed
from tests.support import APPS, WorkerProcess, devreg, sized, wait_for
from tests.topics import publish_commands, read_records

APP = next(iter(APPS))
COMMANDS = sized(test=3000, soak=50_000)
DEVICES = sized(test=300, soak=5000)
DEADLINE_S = sized(test=60, soak=900)


def script(seed: int) -> list[AnyCommand]:
    rng = random.Random(seed)
    commands: list[AnyCommand] = []
    for _ in range(COMMANDS):
        device = f"d{rng.randrange(DEVICES):03d}"
        if rng.random() < 0.8:
            channels = tuple(rng.sample(["a", "b", "c", "d"], rng.randint(1, 2)))
            commands.append(
                RegisterDevice(
                    command_id=uuid.uuid4().hex,
                    app_id=APP,
                    device_id=device,
                    device_token=f"tok-{rng.random()}",
                    os="IOS",
                    os_version="17",
                    channels=channels,
                )
            )
        else:
            commands.append(
                UnregisterDevice(command_id=uuid.uuid4().hex, app_id=APP, device_id=device)
            )
    return commands


def processed(data_dir: Path, topic: str) -> int:
    return sum(committed(data_dir / "decisions.sqlite", topic).values())


def undecided_in_log(tail: LogTail, data_dir: Path, topic: str) -> bool:
    """The events topic holds an event of a command the processor has not committed as
    decided: a crash now makes it decide the command again and re-emit the event."""
    commands, events = tail.records.values()
    sent = {decode_command(r.value or b"").command_id: (r.partition, r.offset) for r in commands}
    decided = committed(data_dir / "decisions.sqlite", topic)
    for record in reversed(events):
        where = sent.get(decode_event(record.value or b"").command_id)
        if where is not None and where[1] >= decided.get(where[0], 0):
            return True
    return False


async def undecided_at(tail: LogTail, data_dir: Path, topic: str) -> bool:
    await tail.poll()
    return undecided_in_log(tail, data_dir, topic)


class StalledCommits:
    """The decision store's write lock, held while in the `with` block (if `hold`): the
    processor's next batch is acknowledged by Kafka, its events in the log, and its commit
    waits (SQLite's busy timeout, 5 s). Released (the empty transaction rolled back) on the
    way out."""

    def __init__(self, store: Path, hold: bool = True):
        self._store, self._hold = store, hold
        self._lock: sqlite3.Connection | None = None

    def __enter__(self) -> StalledCommits:
        if self._hold:
            self._lock = sqlite3.connect(self._store, timeout=10)
            self._lock.isolation_level = None
            self._lock.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._lock is not None:
            self._lock.close()


@pytest.fixture
async def worker(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    # Small batches: more places for a kill to land.
    process = WorkerProcess(tmp_path / "data", broker.bootstrap, env={"DEVREG_BATCH_SIZE": "40"})
    yield process
    await process.stop()


async def test_given_kills_mid_stream_when_restarted_then_one_effect_per_command(
    worker: WorkerProcess, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Given a worker, and 3000 commands over 300 devices (`make soak`: 50k, 5000) published
    # in three parts, each while the worker runs
    await worker.start()
    commands = script(seed=7)
    commands_topic = f"{worker.prefix}.commands"
    tail = LogTail(broker.bootstrap, [commands_topic, f"{worker.prefix}.events"])
    await tail.start()

    # When the worker is SIGKILLed in each part: in the first wherever it is once it has
    # started on it, in the other two while a decided batch's events are in the log and its
    # commit has not happened (the decision store's write lock is taken before the part is
    # published, as by a disk that stalls: the window is made, not hunted for)
    interrupted: list[bool] = []
    published = 0
    try:
        for part, stall in enumerate((False, True, True)):
            chunk = commands[published : COMMANDS * (part + 1) // 3]
            published += len(chunk)
            with StalledCommits(worker.data_dir / "decisions.sqlite", hold=stall):
                await publish_commands(broker.bootstrap, commands_topic, chunk)
                if stall:
                    await wait_for(
                        lambda: undecided_at(tail, worker.data_dir, commands_topic),
                        DEADLINE_S,
                        "events in the log whose commands are not committed as decided",
                    )
                else:
                    started = published - len(chunk)
                    await wait_for(
                        lambda s=started: processed(worker.data_dir, commands_topic) > s,
                        DEADLINE_S,
                        "the worker to start on the part",
                    )
                await worker.kill()
            interrupted.append(processed(worker.data_dir, commands_topic) < published)
            await worker.start()
    finally:
        await tail.stop()
    assert published == COMMANDS
    assert interrupted == [True, True, True], "a kill landed after the end of its part"

    # Then every command gets its outcome
    outcomes_topic = f"{worker.prefix}.outcomes"
    outcomes_raw = await read_records(broker.bootstrap, outcomes_topic, COMMANDS, DEADLINE_S)
    by_command: dict[str, set[bytes]] = defaultdict(set)
    for record in outcomes_raw:
        assert record.value is not None
        by_command[decode_outcome(record.value).command_id].add(record.value)
    assert set(by_command) == {c.command_id for c in commands}
    outcomes = {cid: [decode_outcome(v) for v in copies] for cid, copies in by_command.items()}
    named = {e for copies in outcomes.values() for o in copies for e in o.event_ids}

    # And each event id in the log stands for one byte-identical event (duplicates are
    # copies), and the log holds exactly the events the outcomes name
    events_topic = f"{worker.prefix}.events"
    events_raw = await read_records(broker.bootstrap, events_topic, len(named), DEADLINE_S)
    by_id: dict[str, set[bytes]] = defaultdict(set)
    for record in events_raw:
        assert record.value is not None
        by_id[decode_event(record.value).event_id].add(record.value)
    assert all(len(variants) == 1 for variants in by_id.values())
    assert set(by_id) == named
    reemitted = len(events_raw) - len(by_id)
    print(f"{reemitted} re-emitted duplicate events in the log")
    # (each stalled kill left a decided batch uncommitted: deciding it again re-emitted it)
    assert reemitted > 0, "the kills left no event to re-emit: the copies were not tested"

    # And a command's re-emitted outcomes agree on all but which new channels it announced:
    # a channel is announced by the first command naming it that the worker decides, and a
    # restart may read the partitions in another order (docs/reliability.md, Known limits)
    unique = [decode_event(next(iter(v))) for v in by_id.values()]
    announcements = {e.event_id for e in unique if isinstance(e, ChannelCreated)}
    for copies in outcomes.values():
        assert len({_without(o, announcements) for o in copies}) == 1, copies

    # And per device, versions are gapless from 1 and the hash chain is intact
    assert_chains(unique)
    chains: dict[str, list[AnyEvent]] = defaultdict(list)
    for event in sorted(unique, key=lambda e: e.version):
        if not isinstance(event, ChannelCreated):
            chains[event.device_id].append(event)

    # And the live projection holds, per device, what the domain's own fold (events.evolve,
    # independent of the projection code) makes of the de-duplicated history
    await wait_for(
        lambda: _applied(worker.data_dir, events_topic) >= len(events_raw),
        DEADLINE_S,
        "the projection to apply every event",
    )
    expected = {}
    for device_id, device_events in chains.items():
        state = empty_state(APP, device_id)
        for event in device_events:
            state = evolve(state, event)
        expected[device_id] = (
            state.version,
            sorted((c, s.registration_id) for c, s in state.channels.items()),
        )
    assert _projected(worker.data_dir / "projection.sqlite") == expected

    # And the live projection equals a fresh fold of the whole log, duplicates and all
    rebuilt = await ProjectionStore.open(tmp_path / "rebuilt.sqlite")
    try:
        for partition in sorted({r.partition for r in events_raw}):
            await rebuilt.apply(
                sorted((r for r in events_raw if r.partition == partition), key=lambda r: r.offset)
            )
    finally:
        await rebuilt.close()
    assert _rows(tmp_path / "rebuilt.sqlite") == _rows(worker.data_dir / "projection.sqlite")

    # And `devreg verify` (the operator's check: rebuild, compare, every chain) agrees
    code, out, err = await devreg(worker, "verify", "--quiet", deadline_s=DEADLINE_S)
    assert code == 0, (out, err)


def _without(outcome: Outcome, announcements: set[str]) -> bytes:
    """The outcome without the ChannelCreated events it lists."""
    kept = tuple(e for e in outcome.event_ids if e not in announcements)
    return encode(msgspec.structs.replace(outcome, event_ids=kept))


def _applied(data_dir: Path, topic: str) -> int:
    return sum(committed(data_dir / "projection.sqlite", topic).values())


def _projected(path: Path) -> dict[str, tuple[int, list[tuple[str, str]]]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        versions = dict(db.execute("SELECT device_id, version FROM devices").fetchall())
        channels: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for device_id, channel, registration_id in db.execute(
            "SELECT device_id, channel, registration_id FROM subscriptions ORDER BY channel"
        ):
            channels[device_id].append((channel, registration_id))
    return {d: (v, channels.get(d, [])) for d, v in versions.items()}


def _rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return {
            "devices": db.execute("SELECT * FROM devices ORDER BY app_id, device_id").fetchall(),
            "subscriptions": db.execute(
                "SELECT * FROM subscriptions ORDER BY app_id, device_id, channel"
            ).fetchall(),
            "channels": db.execute("SELECT * FROM channels ORDER BY app_id, channel").fetchall(),
        }
