"""Swapping a rebuilt projection file in under a live store, on real SQLite files.

The rebuild's side of the handshake is played here by hand, so each step can be watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import DeviceRegistered, encode
from events.identity import event_id, partition_key, registration_id, seal
from projections.checkpoints import Checkpointer
from projections.positions import Record
from projections.sqlite import InlineConnection
from projections.store import ProjectionStore
from projections.swap_files import SwapFiles, SwapMessage, new_id, now_ms
from services.progress import Progress
from services.rebuild.build import Build
from tests.support import wait_for

TOPIC = "t.events"


def records(first: int, count: int) -> list[Record]:
    """Version-1 registrations of devices first..first+count, one per offset of partition 0."""
    found = []
    for number in range(first, first + count):
        device = f"d{number}"
        event = seal(
            DeviceRegistered(
                event_id=event_id("app", device, 0),
                app_id="app",
                version=1,
                occurred_at=1000 + number,
                command_id=device,
                prev_hash="",
                device_id=device,
                device_token=f"token-{device}",
                os="IOS",
                os_version="17",
                channels=("news",),
                registration_ids={"news": registration_id("app", device, "news")},
            )
        )
        key = partition_key("app", device)
        found.append(Record(TOPIC, 0, number, 1000 + number, key, encode(event)))
    return found


async def candidate(live: Path, applied: list[Record]) -> None:
    """The rebuild's file, closed and ready to be renamed."""
    build = await Build.fresh(SwapFiles(live).candidate, TOPIC, Progress("t", quiet=True))
    await build.store.apply(applied)
    await build.close()


async def handshake(files: SwapFiles) -> SwapMessage:
    request = SwapMessage(id=new_id(), at_ms=now_ms(), candidate=str(files.candidate))
    files.write(files.request, request)
    paused = await wait_for(lambda: _read(files, files.paused), 10, "the store to pause")
    assert paused.id == request.id
    files.write(files.ready, SwapMessage(id=request.id, at_ms=now_ms()))
    done = await wait_for(lambda: _read(files, files.done), 10, "the swap to be done")
    assert done.id == request.id
    return done


async def _read(files: SwapFiles, path: Path) -> SwapMessage | None:
    return files.read(path)


def devices_in(live: Path) -> int:
    """Rows in the file on disk, read as another process would."""
    with contextlib.closing(sqlite3.connect(f"file:{live}?mode=ro", uri=True)) as db:
        count: int = db.execute("SELECT count(*) FROM devices").fetchone()[0]
        return count


def _checkpointer(store: ProjectionStore) -> Checkpointer:
    conn = store.connection
    assert isinstance(conn, InlineConnection)
    assert conn.checkpointer is not None
    return conn.checkpointer


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Path, ProjectionStore]]:
    """A live projection store, answering swap requests as the worker's does."""
    path = tmp_path / "projection.sqlite"
    store = await ProjectionStore.open(path)
    yield path, store
    await store.close()


async def test_given_a_rebuilt_file_when_swapped_under_queries_then_none_fails(
    live: tuple[Path, ProjectionStore],
) -> None:
    # Given a live store holding a row the log does not say (tampered), and a rebuilt file
    path, store = live
    await store.apply(records(0, 50))
    await store.connection.execute(
        "UPDATE devices SET device_token = 'stale' WHERE device_id = 'd7'"
    )
    await store.connection.commit()
    await candidate(path, records(0, 50))
    inode = os.stat(path).st_ino
    stop, failures, answers = asyncio.Event(), list[str](), [0]

    async def query() -> None:
        while not stop.is_set():
            try:
                view = await store.get_device("app", "d7", 0)
                assert view is not None
                answers[0] += 1
            except Exception as exc:
                failures.append(repr(exc))
            await asyncio.sleep(0)

    # When the swap happens while queries run (lookups on the loop's own connection), the
    # file's checkpoints on a thread of their own
    assert store.lookups_on_loop
    before = _checkpointer(store)
    assert before.running
    loops = [asyncio.ensure_future(query()) for _ in range(4)]
    try:
        done = await handshake(SwapFiles(path))
    finally:
        stop.set()
        await asyncio.gather(*loops)

    # Then no query failed, and the store now answers from the rebuilt file, on the loop again
    assert done.ok, done.error
    assert failures == []
    assert answers[0] > 0
    assert os.stat(path).st_ino != inode
    view = await store.get_device("app", "d7", 0)
    assert view is not None
    assert view.device_token == "token-d7"
    assert store.lookups_on_loop
    after = _checkpointer(store)
    assert after is not before
    assert after.running
    assert not before.running

    # And later batches go to the new file
    await store.apply(records(50, 10))
    assert devices_in(path) == 60
    assert not SwapFiles(path).candidate.exists()


async def test_given_a_batch_during_the_pause_when_swapped_then_it_lands_in_the_new_file(
    live: tuple[Path, ProjectionStore],
) -> None:
    path, store = live
    await store.apply(records(0, 5))
    await candidate(path, records(0, 5))
    inode = os.stat(path).st_ino
    files = SwapFiles(path)
    request = SwapMessage(id=new_id(), at_ms=now_ms(), candidate=str(files.candidate))
    files.write(files.request, request)
    await wait_for(lambda: _read(files, files.paused), 10, "the store to pause")

    # Given a batch arriving while the store is paused
    batch = asyncio.ensure_future(store.apply(records(5, 3)))
    await asyncio.sleep(0)
    assert not batch.done()

    # When the rebuild says it is ready
    files.write(files.ready, SwapMessage(id=request.id, at_ms=now_ms()))

    # Then the batch is applied after the swap, to the new file
    result = await asyncio.wait_for(batch, 10)
    assert result.applied == 3
    assert os.stat(path).st_ino != inode
    assert devices_in(path) == 8


async def test_given_a_candidate_at_other_positions_when_asked_then_refused_and_live_kept(
    live: tuple[Path, ProjectionStore],
) -> None:
    # Given a rebuilt file that stopped short of the live positions
    path, store = live
    await store.apply(records(0, 20))
    await candidate(path, records(0, 10))
    inode = os.stat(path).st_ino

    # When asked to swap
    done = await handshake(SwapFiles(path))

    # Then it refuses, saying why, and the live file serves and takes batches as before
    assert not done.ok
    assert "is at" in (done.error or "")
    assert os.stat(path).st_ino == inode
    await store.apply(records(20, 1))
    assert await store.get_device("app", "d20", 0) is not None
    assert devices_in(path) == 21
    assert store.lookups_on_loop


async def test_given_a_stale_request_when_seen_then_ignored(
    live: tuple[Path, ProjectionStore],
) -> None:
    path, store = live
    files = SwapFiles(path)
    files.write(files.request, SwapMessage(id="old", at_ms=0, candidate=str(files.candidate)))
    await wait_for(lambda: _gone(files), 10, "the stale request to be dropped")
    assert files.read(files.paused) is None
    await store.apply(records(0, 1))


async def _gone(files: SwapFiles) -> bool:
    return files.read(files.request) is None
