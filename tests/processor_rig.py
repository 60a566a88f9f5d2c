"""A command processor on real SQLite files, with a hand-written producer that holds every
acknowledgement until the test releases it (tests/unit/test_overlapping_batches.py,
tests/unit/test_prepared_expiries.py; the integration tests run the same code on the real
broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiokafka.structs import RecordMetadata

from events import DeviceRegistered, RegisterDevice, decode_event, encode
from events.identity import partition_key
from projections.positions import Record
from projections.store import ProjectionStore
from services.config import load_settings
from services.metrics import Metrics
from services.stream.decision_store import DecisionStore
from services.stream.processor import CommandProcessor
from services.stream.projector import Projector
from services.stream.read_back import ReadBack
from services.stream.visibility import Visibility
from tests.fake_batches import FakeBatch

APP = "app"


class HeldProducer:
    """Assigns offsets as Kafka would, and acknowledges only when released."""

    def __init__(self) -> None:
        self.sent: list[Record] = []
        self._held: list[tuple[asyncio.Future[Any], RecordMetadata]] = []
        self._offsets: dict[tuple[str, int], int] = {}

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Any = None,
    ) -> asyncio.Future[Any]:
        p = partition or 0
        offset = self._offsets.get((topic, p), 0)
        self._offsets[(topic, p)] = offset + 1
        self.sent.append(Record(topic, p, offset, 0, key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._held.append((future, RecordMetadata(topic, p, None, offset, 0, -1, 0)))
        return future

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(
        self, batch: FakeBatch, topic: str, *, partition: int
    ) -> asyncio.Future[Any]:
        base = self._offsets.get((topic, partition), 0)
        self._offsets[(topic, partition)] = base + len(batch.records)
        for i, (key, value) in enumerate(batch.records):
            self.sent.append(Record(topic, partition, base + i, 0, key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._held.append((future, RecordMetadata(topic, partition, None, base, -1, 0, 0)))
        return future

    def release(self) -> None:
        for future, meta in self._held:
            future.set_result(meta)
        self._held.clear()


class NoReader:
    async def pause(self, partitions: set[int]) -> None:
        raise AssertionError("a read-back with no recheck interval never pauses")

    async def resume(self, positions: Mapping[int, int]) -> None:
        raise AssertionError("nothing was paused")


def registration(device: str, command_id: str, expiration: int | None) -> RegisterDevice:
    """A registration on "news" of `device`, its token `token-<device>`."""
    return RegisterDevice(
        command_id=command_id,
        app_id=APP,
        device_id=device,
        issued_at=1_000,
        device_token=f"token-{device}",
        os="IOS",
        os_version="17",
        channels=("news",),
        expiration=expiration,
    )


async def open_rig(path: Path) -> Rig:
    """A rig on fresh SQLite files in `path` (close_rig closes them)."""
    decisions = await DecisionStore.open(path / "decisions.sqlite")
    projection = await ProjectionStore.open(path / "projection.sqlite", swappable=False)
    return Rig(path, decisions, projection)


async def close_rig(rig: Rig) -> None:
    await rig.decisions.close()
    await rig.projection.close()


class Rig:
    def __init__(self, tmp: Path, decisions: DecisionStore, projection: ProjectionStore):
        self.settings = load_settings({"DEVREG_DATA_DIR": str(tmp), "DEVREG_APPS": f"{APP}:k"})
        self.decisions, self.projection = decisions, projection
        self.producer = HeldProducer()
        self.failures: list[BaseException] = []
        visibility, metrics = Visibility(self.settings.events_topic), Metrics()
        self.metrics = metrics
        read_back = ReadBack(NoReader(), lambda p: 0, metrics, recheck_s=0)  # never pauses
        projector = Projector(projection, visibility, metrics, lambda _: None, read_back)
        self.processor = CommandProcessor(
            self.settings,
            decisions,
            self.producer,  # type: ignore[arg-type]
            visibility,
            metrics,
            lambda app, device: 0,  # one partition: every key's
            self.failures.append,
            projector.handle_own,
            None,  # raw tokens decided as they are: this is about batches, not sealing
        )

    def command(self, offset: int, channel: str) -> Record:
        command = RegisterDevice(
            command_id=f"c{offset}",
            app_id=APP,
            device_id="dev",
            issued_at=1_000 + offset,
            device_token="t",
            os="IOS",
            os_version="17",
            channels=(channel,),
        )
        key = partition_key(APP, "dev")
        return Record(self.settings.commands_topic, 0, offset, 0, key, encode(command))

    def registrations(self) -> list[DeviceRegistered]:
        topic = self.settings.events_topic
        events = [decode_event(r.value or b"") for r in self.producer.sent if r.topic == topic]
        return [e for e in events if isinstance(e, DeviceRegistered)]
