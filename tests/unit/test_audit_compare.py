"""Row-by-row comparison of two projection files, as `devreg verify` runs it."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import aiosqlite

from events import ChannelCreated, DeviceRegistered, encode
from events.identity import event_id, partition_key, registration_id, seal
from projections.compare import Difference, differences
from projections.positions import Record
from projections.store import ProjectionStore


def log() -> list[Record]:
    channel = seal(
        ChannelCreated(
            event_id="c",
            app_id="app",
            version=1,
            occurred_at=1,
            command_id="c",
            prev_hash="",
            channel="news",
        )
    )
    found = [Record("t", 0, 0, 1, partition_key("app", "d0"), encode(channel))]
    for number in range(3):
        device = f"d{number}"
        event = seal(
            DeviceRegistered(
                event_id=event_id("app", device, 0),
                app_id="app",
                version=1,
                occurred_at=2,
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
        found.append(Record("t", 0, number + 1, 2, partition_key("app", device), encode(event)))
    return found


async def projection(path: Path) -> Path:
    store = await ProjectionStore.open(path, swappable=False)
    await store.apply(log())
    await store.close()
    return path


async def compare(rebuilt: Path, live: Path) -> list[Difference]:
    async with aiosqlite.connect(rebuilt) as conn:
        await conn.execute("ATTACH DATABASE ? AS live", (str(live),))
        return [difference async for difference in differences(conn)]


async def test_given_two_folds_of_one_log_when_compared_then_no_difference(
    tmp_path: Path,
) -> None:
    rebuilt = await projection(tmp_path / "rebuilt.sqlite")
    live = await projection(tmp_path / "live.sqlite")
    assert await compare(rebuilt, live) == []


async def test_given_changed_missing_and_extra_rows_when_compared_then_each_is_named(
    tmp_path: Path,
) -> None:
    rebuilt = await projection(tmp_path / "rebuilt.sqlite")
    live = await projection(tmp_path / "live.sqlite")
    with contextlib.closing(sqlite3.connect(live)) as db, db:
        db.execute("UPDATE devices SET os_version = '1' WHERE device_id = 'd1'")
        db.execute("DELETE FROM subscriptions WHERE device_id = 'd2'")
        db.execute("INSERT INTO channels (app_id, channel, created_at) VALUES ('app', 'x', 5)")
        # History rows are keyed by a unique index, not a primary key: each is still named.
        db.execute("UPDATE device_events SET occurred_at = 9 WHERE device_id = 'd0'")
        db.execute("DELETE FROM device_events WHERE device_id = 'd1'")

    found = {(d.table, tuple(d.key.values())): d for d in await compare(rebuilt, live)}

    assert set(found) == {
        ("devices", ("app", "d1")),
        ("subscriptions", ("app", "d2", "news")),
        ("channels", ("app", "x")),
        ("device_events", ("app", "d0", 1)),
        ("device_events", ("app", "d1", 1)),
    }
    changed = found[("devices", ("app", "d1"))]
    assert changed.live is not None
    assert changed.rebuilt is not None
    assert (changed.live["os_version"], changed.rebuilt["os_version"]) == ("1", "17")
    assert found[("subscriptions", ("app", "d2", "news"))].live is None
    assert found[("channels", ("app", "x"))].rebuilt is None
    assert found[("device_events", ("app", "d1", 1))].live is None
