"""The registry as it was at an instant, from the log (`devreg as-of`).

The same fold as the live projection (services/rebuild/build.py), run over the events that had
happened by then, into a file with the live schema.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from events.identity import partition_key
from projections.device_lookup import DeviceView
from projections.positions import Record
from projections.queries import ChannelDevice
from services.audit.history import event_of
from services.kafka.clients import KafkaAccess
from services.keys.snapshot import KeySnapshot
from services.log.reader import LogReader
from services.progress import Progress
from services.rebuild.build import Build, BuildReport, remove_db

_key_decoder = msgspec.json.Decoder(tuple[str, ...])
DeviceKey = tuple[str, str]


class AsOf:
    """Keeps the events that had happened by `at_ms`. A device's chain is cut at its first
    event after `at_ms`: a later event stamped earlier (a command carrying an old issued_at)
    did not exist yet at that instant, and the events after it build on it."""

    def __init__(self, at_ms: int, app_id: str | None = None, device_id: str | None = None):
        self.at_ms, self._cut = at_ms, set[DeviceKey]()
        self._key = partition_key(app_id, device_id) if app_id and device_id else None
        self._app = app_id

    def _wanted(self, record: Record) -> bool:
        if self._key is not None:
            return record.key == self._key
        if self._app is not None:
            parts = _key_decoder.decode(record.key or b"[]")
            return bool(parts) and parts[0] == self._app
        return True

    def __call__(self, batch: list[Record]) -> list[Record]:
        kept = []
        for record in batch:
            if not self._wanted(record):
                continue
            event = event_of(record)
            device = getattr(event, "device_id", None)
            key = (event.app_id, device or "")
            if device is not None and key in self._cut:
                continue
            if event.occurred_at > self.at_ms:
                if device is not None:
                    self._cut.add(key)
                continue
            kept.append(record)
        return kept


async def as_of_file(
    kafka: KafkaAccess, topic: str, at: AsOf, path: Path, progress: Progress
) -> BuildReport:
    build = await Build.fresh(path, topic, progress)
    try:
        async with LogReader(kafka) as reader:
            await build.extend(reader, None, keep=at)
    except BaseException:
        await build.store.close()
        remove_db(path)  # half a registry must not pass for one
        raise
    await build.close()
    return build.report()


@contextlib.asynccontextmanager
async def _as_of_store(
    kafka: KafkaAccess, topic: str, at: AsOf, progress: Progress
) -> AsyncIterator[Build]:
    with tempfile.TemporaryDirectory(prefix="devreg-as-of-") as tmp:
        build = await Build.fresh(Path(tmp) / "as-of.sqlite", topic, progress)
        try:
            async with LogReader(kafka) as reader:
                await build.extend(reader, None, keep=at)
            yield build
        finally:
            await build.store.close()


async def device_as_of(
    kafka: KafkaAccess,
    topic: str,
    app_id: str,
    device_id: str,
    at_ms: int,
    progress: Progress,
    keys: KeySnapshot | None = None,
) -> DeviceView | None:
    at = AsOf(at_ms, app_id, device_id)
    async with _as_of_store(kafka, topic, at, progress) as build:
        # The live query, at that instant: a passed expiration is not shown.
        device = await build.store.get_device(app_id, device_id, at_ms)
    if device is None or keys is None:
        return device
    token = keys.open(app_id, device_id, "device_token", device.device_token)
    return msgspec.structs.replace(device, device_token=token)


async def channel_as_of(
    kafka: KafkaAccess,
    topic: str,
    app_id: str,
    channel: str,
    at_ms: int,
    progress: Progress,
    keys: KeySnapshot | None = None,
) -> list[ChannelDevice]:
    at = AsOf(at_ms, app_id)
    devices: list[ChannelDevice] = []
    async with _as_of_store(kafka, topic, at, progress) as build:
        after = ""
        while page := await build.store.channel_devices(app_id, channel, at_ms, after, 1000, None):
            devices.extend(page)
            after = page[-1].deviceId
    if keys is None:
        return devices
    return [
        msgspec.structs.replace(
            d, deviceToken=keys.open(app_id, d.deviceId, "device_token", d.deviceToken)
        )
        for d in devices
    ]
