"""A channel's devices over time from a real projection file (projections/channel_series.py):
the devices whose events name the channel are found by SQLite, only those are folded, and a
worker counts only the partitions it serves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import (
    AnyEvent,
    ChannelCreated,
    DeviceState,
    RegisterDevice,
    UnregisterDevice,
    decide,
    empty_state,
    encode,
    evolve,
)
from projections.positions import Record
from projections.store import ProjectionStore

T0 = 1_800_000_000_000
TOPIC = "devreg.events"


def decided(commands: list[RegisterDevice | UnregisterDevice]) -> list[AnyEvent]:
    states: dict[str, DeviceState] = {}
    known: set[str] = set()
    log: list[AnyEvent] = []
    for i, command in enumerate(commands):
        state = states.get(command.device_id) or empty_state(command.app_id, command.device_id)
        for event in decide(state, known, command, T0 + 1000 * i).events:
            if isinstance(event, ChannelCreated):
                known.add(event.channel)
            else:
                state = evolve(state, event)
            log.append(event)
        states[command.device_id] = state
    return log


def reg(
    command_id: str, device: str, channels: tuple[str, ...], token: str = "t"
) -> RegisterDevice:
    return RegisterDevice(
        command_id=command_id,
        app_id="app",
        device_id=device,
        device_token=token,
        os="IOS",
        os_version="17",
        channels=channels,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ProjectionStore]:
    opened = await ProjectionStore.open(tmp_path / "projection.sqlite")
    yield opened
    await opened.close()


async def test_given_devices_joining_and_leaving_then_counted_at_each_instant(
    store: ProjectionStore,
) -> None:
    # Given d1 on news at T0, d2 (partition 1) at T0+1s, d1 leaving news at T0+2s; and a
    # device whose id and token are the channel's name but which never joins it
    log = decided(
        [
            reg("c1", "d1", ("news",)),
            reg("c2", "d2", ("news", "sport")),
            UnregisterDevice(command_id="c3", app_id="app", device_id="d1", channels=("news",)),
            reg("c4", "news", ("sport",), token="news"),
        ]
    )
    partitions = {"d1": 0, "d2": 1, "news": 0}
    offsets = {0: 0, 1: 0}
    records = []
    for event in log:
        partition = 0 if isinstance(event, ChannelCreated) else partitions[event.device_id]
        records.append(Record(TOPIC, partition, offsets[partition], T0, b"k", encode(event)))
        offsets[partition] += 1
    await store.apply(records)
    moments = [T0 - 1, T0, T0 + 1000, T0 + 2000, T0 + 9000]

    # Then news counts d1 from T0 to T0+2s and d2 from T0+1s on, and never the look-alike
    assert await store.channel_series("app", "news", moments) == [0, 1, 2, 1, 1]
    assert await store.channel_series("app", "sport", moments) == [0, 0, 1, 1, 2]
    # And a worker serving partition 0 only counts its own devices
    assert await store.channel_series("app", "news", moments, frozenset({0})) == [0, 1, 1, 0, 0]
    # And another app, or a channel no event names, has nobody
    assert await store.channel_series("other", "news", moments) == [0] * 5
    assert await store.channel_series("app", "<img src=x>", moments) == [0] * 5
