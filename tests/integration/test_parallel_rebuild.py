"""A rebuild spread over processes (services/rebuild/parallel.py), on the real broker: the same
file, row for row, as one process folds; a part that fails fails the whole rebuild.

The log is written here straight to a fresh events topic: every partition announces the
channels it is first to name, at its own times (as workers owning different partitions do),
so the merge's earliest-time rule for channels is exercised."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from events import AnyEvent, ChannelCreated, DeviceEvent, ExpireRegistration, encode
from events.identity import partition_key, seal
from projections.fold import ProjectionError
from projections.positions import Record
from services.kafka.partitioner import partition_for
from services.log.broker import EmbeddedBroker
from services.log.reader import LogReader
from services.progress import Progress
from services.rebuild.build import RebuildError
from services.rebuild.parallel import _Part, fold, split
from tests.support import PARTITIONS, WorkerProcess, devreg
from tests.unit.domain import APP, HOUR, NOW, Registry, register, unregister

DEVICES = 60
CHANNELS = ("news", "sport", "weather", "music")
Log = dict[int, list[AnyEvent]]  # partition -> its events, in order


def scripted_log() -> Log:
    """Registrations, re-registrations, unregistrations (partial and whole) and expiries."""
    registries: dict[int, Registry] = defaultdict(Registry)  # a command processor per partition
    log: Log = defaultdict(list)
    for i in range(DEVICES):
        device = f"device-{i:03d}"
        partition = partition_for(partition_key(APP, device), PARTITIONS)
        at = NOW + i * 1000
        channels = (CHANNELS[i % 4], CHANNELS[(i + 1) % 4])
        commands: list[tuple[object, int]] = [
            (register(f"r-{i}", device_id=device, channels=channels, expiration=at + HOUR), at)
        ]
        if i % 3 == 0:
            again = register(f"r2-{i}", device_id=device, device_token=f"new-{i}", channels=("x",))
            commands.append((again, at + 1))
        if i % 4 == 1:
            commands.append((unregister(f"u-{i}", device_id=device, channels=channels[:1]), at + 2))
        if i % 5 == 2:
            commands.append((unregister(f"u2-{i}", device_id=device), at + 3))
        if i % 7 == 3:
            expiry = ExpireRegistration(
                command_id=f"e-{i}", app_id=APP, device_id=device, expiration=at + HOUR
            )
            commands.append((expiry, at + HOUR + 1))
        for command, now in commands:
            log[partition].extend(registries[partition].accepted(command, now))  # type: ignore[arg-type]
    return log


async def write_log(bootstrap: str, topic: str, log: Log) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, events in log.items():
            for event in events:
                key = partition_key(event.app_id, getattr(event, "device_id", event.app_id))
                await producer.send_and_wait(topic, encode(event), key=key, partition=partition)
    finally:
        await producer.stop()


Change = Callable[[DeviceEvent], AnyEvent]


def forged_log(partition: int, pick: Callable[[list[int]], int], change: Change) -> Log:
    """The scripted log with one device event of `partition` (`pick`ed among their indexes)
    replaced by `change` of it."""
    log = scripted_log()
    events = log[partition]
    where = pick([i for i, e in enumerate(events) if not isinstance(e, ChannelCreated)])
    original = events[where]
    assert not isinstance(original, ChannelCreated)
    events[where] = change(original)
    return log


async def on_new_topics(broker: EmbeddedBroker, data_dir: Path, log: Log) -> WorkerProcess:
    """Topics of their own with `log` on them (no worker runs): the environment of devreg
    commands that read them."""
    topics = WorkerProcess(data_dir, broker.bootstrap)
    code, _, err = await devreg(topics, "topics", "--create")
    assert code == 0, err
    await write_log(broker.bootstrap, f"{topics.prefix}.events", log)
    return topics


def rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table's rows in a stable order, and every index by name."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        found = {
            name: sorted(db.execute(f"SELECT * FROM {name}").fetchall(), key=repr)
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        found["indexes"] = sorted(
            db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
        )
    return found


@pytest.fixture(scope="module")
async def logged(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> tuple[WorkerProcess, Log]:
    """Topics of their own with the scripted log on them (no worker runs)."""
    log = scripted_log()
    assert len(log) == PARTITIONS  # every partition has devices
    data_dir = tmp_path_factory.mktemp("parallel") / "data"
    return await on_new_topics(broker, data_dir, log), log


async def rebuilt(
    topics: WorkerProcess, data_dir: Path, *args: str
) -> tuple[dict[str, object], Path]:
    topics.data_dir = data_dir
    code, out, err = await devreg(topics, "rebuild", "--offline", "--quiet", *args)
    assert code == 0, err
    return json.loads(out), data_dir / "projection.sqlite"


async def test_given_a_log_when_rebuilt_by_several_processes_then_the_file_is_the_one_process_file(
    logged: tuple[WorkerProcess, Log], tmp_path: Path
) -> None:
    topics, log = logged
    events = sum(len(e) for e in log.values())
    # When the log is rebuilt by one process, and by two and three (a partition set each)
    one, one_file = await rebuilt(topics, tmp_path / "one", "--processes", "1")
    reports, files = {}, {}
    for n in (2, 3):
        reports[n], files[n] = await rebuilt(topics, tmp_path / f"by-{n}", "--processes", str(n))

    # Then each read every event once and reports how many processes folded it
    assert (one["events"], one["applied"], one["processes"]) == (events, events, 1)
    for n, report in reports.items():
        assert (report["events"], report["applied"], report["processes"]) == (events, events, n)
        assert report["positions"] == one["positions"]
        # And the files equal the one-process file: every row of every table, every index
        assert rows(files[n]) == rows(one_file)
        assert not list(files[n].parent.glob("*.part*"))  # the parts are gone
    # And a channel announced on several partitions carries its earliest announcement
    announced: dict[str, list[int]] = defaultdict(list)
    for event in (e for events in log.values() for e in events):
        if isinstance(event, ChannelCreated):
            announced[event.channel].append(event.occurred_at)
    assert any(len(set(times)) > 1 for times in announced.values())
    with contextlib.closing(sqlite3.connect(files[3])) as db:
        created = dict(db.execute("SELECT channel, created_at FROM channels").fetchall())
    assert created == {channel: min(times) for channel, times in announced.items()}


async def test_given_a_broken_chain_in_one_partition_when_rebuilt_in_parts_then_it_fails_whole(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Given a log whose partition 1 holds a forged event (its hash no longer follows)
    log = forged_log(1, max, lambda e: seal(msgspec.structs.replace(e, prev_hash="0" * 64)))
    forged = log[1][max(i for i, e in enumerate(log[1]) if not isinstance(e, ChannelCreated))]
    topics = await on_new_topics(broker, tmp_path / "data", log)
    # and a live projection file the rebuild would replace
    live = topics.data_dir / "projection.sqlite"
    topics.data_dir.mkdir(parents=True)
    live.write_bytes(b"the live file")

    # When rebuilt by three processes
    code, out, err = await devreg(topics, "rebuild", "--offline", "--quiet", "--processes", "3")

    # Then the rebuild fails, naming the partition and the event, and replaces nothing
    assert code == 2, (out, err)
    assert "partitions [1]" in err, err
    assert forged.event_id in err
    assert live.read_bytes() == b"the live file"
    assert sorted(p.name for p in topics.data_dir.iterdir()) == ["projection.sqlite"]


async def test_given_a_broken_chain_when_folded_in_parts_then_the_fold_raises_projection_error(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Given a log whose partition 2 has an event that does not follow its predecessor
    log = forged_log(2, min, lambda e: seal(msgspec.structs.replace(e, version=2)))
    topics = await on_new_topics(broker, tmp_path / "data", log)
    # When it is folded by three processes, then the fold fails as one process's does (what
    # `devreg verify` reports as a broken chain), naming the partition
    async with LogReader(broker.kafka) as reader:
        with pytest.raises(ProjectionError, match=r"partitions \[2\]: .*gap or a broken"):
            await fold(
                tmp_path / "p.sqlite",
                f"{topics.prefix}.events",
                reader,
                Progress("t", quiet=True),
                None,
                3,
            )
    assert [name for name in os.listdir(tmp_path) if name.startswith("p.sqlite")] == []


async def test_given_a_forged_event_when_verified_by_several_processes_then_it_names_it(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Given a log with an event whose content was changed, its hash kept (the fold takes it:
    # its links are intact), and a projection rebuilt from it
    log = forged_log(0, max, lambda e: msgspec.structs.replace(e, occurred_at=e.occurred_at + 1))
    forged = log[0][max(i for i, e in enumerate(log[0]) if not isinstance(e, ChannelCreated))]
    topics = await on_new_topics(broker, tmp_path / "data", log)
    code, _, err = await devreg(topics, "rebuild", "--offline", "--quiet")
    assert code == 0, err

    # When verified by three processes
    code, out, err = await devreg(topics, "verify", "--quiet", "--processes", "3")

    # Then it fails, naming the forged event
    assert code == 1, (out, err)
    lines = [json.loads(line) for line in out.splitlines()]
    [problem] = [line for line in lines if line["kind"] == "chain"]
    assert (problem["partition"], problem["device_id"]) == (0, forged.device_id)
    assert "hash does not match" in problem["reason"]
    assert (lines[-1]["verdict"], lines[-1]["differences"]) == ("fail", 0)


async def send_and_finish(part: _Part, records: list[Record], batches: int) -> None:
    for _ in range(batches):
        await part.send(records)
    await part.finish()


async def test_given_a_part_that_cannot_start_when_records_are_sent_then_its_reason_is_raised(
    tmp_path: Path,
) -> None:
    # Given a part whose file cannot be created (its directory is a file)
    (tmp_path / "not-a-dir").write_text("")
    part = await _Part.start(tmp_path / "not-a-dir" / "p.sqlite", "t.events", [0, 2])
    records = [
        Record("t.events", 0, offset, NOW, b"k", encode(event))
        for offset, event in enumerate(scripted_log()[0])
    ]
    try:
        # When batch after batch is sent to it, more than its queue holds, and it is finished
        with pytest.raises(RebuildError) as failed:
            await asyncio.wait_for(send_and_finish(part, records, 20), 60)
    finally:
        await part.stop()
    # Then the sending stops with the part's own reason, not a hang or a broken pipe
    assert "the fold of partitions [0, 2] failed (exit status 1)" in str(failed.value)
    assert "not-a-dir" in str(failed.value)


def test_partitions_are_split_into_sets_of_about_as_many_events() -> None:
    assert split({0: 10, 1: 10, 2: 10, 3: 10, 4: 10, 5: 10}, 2) == [[0, 2, 4], [1, 3, 5]]
    assert split({0: 100, 1: 10, 2: 10, 3: 80}, 2) == [[0], [1, 2, 3]]
    assert split({0: 5, 1: 5}, 4) == [[0], [1]]  # never more sets than partitions
    assert split({0: 5, 1: 5, 2: 0}, 1) == [[0, 1, 2]]
