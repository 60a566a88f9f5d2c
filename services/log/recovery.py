"""What `devreg run` does before its worker starts: the kept log back into a fresh broker.

1. An archive of the export/import era (`log-archive.ndjson`) with no kept log beside it
   becomes the kept log (once; the archive is renamed).
2. Each store (decisions, projection, token index) is checked against the kept log: one that
   claims a record the kept log does not hold, or another one, is discarded, loudly, like a
   corrupt one. What each remaining store has applied is a floor: the broker must hold every
   record from there on (services/log/restore.py).
3. The kept log's compacted topics (keys, tokens) are compacted in place up to their floors
   (services/log/kept_compaction.py): what a tombstone erased is not kept, nor given back.
4. The topics are created and given their tails, compacted topics compacted.

The key store is not checked here: a worker reads its partitions' keys on from the store's
positions, from the kept log, when it is handed them (services/keys/reads.py), which is at
every start; a position past the kept log's end is read from 0.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from projections.positions import Position, Record
from projections.sqlite import CorruptStore
from projections.store import ProjectionStore
from services.config import Settings
from services.kafka.clients import KafkaAccess
from services.log import kept_compaction, store_check
from services.log.archive import ArchivedRecord
from services.log.broker import EmbeddedBroker
from services.log.journal import Journal
from services.log.public_port import PublicPort
from services.log.restore import Restored, restore
from services.log.segments import SegmentLog
from services.log.topics import compacted_topics, ensure_topics, topic_names
from services.stream.decision_store import DecisionStore
from services.tokens.index_store import IndexStore

log = logging.getLogger(__name__)
TP = tuple[str, int]


@dataclass
class Embedded:
    """What `devreg run` hands its worker in the embedded mode (services/embedded.py)."""

    journal: Journal
    broker: EmbeddedBroker
    restored: Restored
    public: PublicPort  # the port others use, held shut during a renewal


def adopt_archive(archive: Path, segments: SegmentLog) -> int:
    """Append an export/import archive to an empty kept log; returns the records taken."""
    if not archive.exists() or any(segments.ends().values()):
        return 0
    decoder = msgspec.json.Decoder(ArchivedRecord)
    taken = 0
    with archive.open("rb") as lines:
        batch: list[Record] = []
        for line in lines:
            r = decoder.decode(line)
            batch.append(
                Record(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, r.headers)
            )
            if len(batch) >= 10_000:
                taken += segments.append(batch)
                batch = []
        taken += segments.append(batch)
    segments.sync()
    archive.rename(archive.with_name(archive.name + ".adopted"))
    log.info("the archive %s became the kept log (%d records)", archive, taken)
    return taken


async def _positions(path: Path, opener: Callable[[Path], Awaitable[Any]]) -> list[Position]:
    store = await opener(path)
    try:
        positions: list[Position] = await store.positions()
        return positions
    finally:
        await store.close()


async def checked_floors(settings: Settings, segments: SegmentLog) -> dict[TP, int]:
    """Where each store resumes, per partition of its topic in the kept log; a store the
    kept log does not back is discarded first (and then resumes from 0)."""

    async def projection(path: Path) -> ProjectionStore:
        return await ProjectionStore.open(path, swappable=False)

    stores = (
        (settings.decisions_path, DecisionStore.open, settings.commands_topic),
        (settings.projection_path, projection, settings.events_topic),
        (settings.index_path, IndexStore.open, settings.tokens_topic),
    )
    floors: dict[TP, int] = {}
    for path, opener, topic in stores:
        positions: list[Position] = []
        if path.exists():
            try:
                positions = await _positions(path, opener)
            except CorruptStore as exc:
                store_check.discard(path, [str(exc)])
            else:
                reasons = store_check.kept_mismatches(segments, positions)
                if reasons:
                    store_check.discard(path, reasons)
                    positions = []
        resume = {(p.topic, p.partition): p.next_offset for p in positions}
        for tp in segments.ends():
            if tp[0] == topic:
                floors[tp] = resume.get(tp, 0)
    return floors


async def recover(settings: Settings, kafka: KafkaAccess, segments: SegmentLog) -> Restored:
    adopt_archive(settings.archive_path, segments)
    floors = await checked_floors(settings, segments)
    compacted = compacted_topics(settings)
    erased = kept_compaction.compact_all(kept_compaction.snapshot(segments, compacted), floors)
    if erased:
        log.info("compacted the kept log: %d erased records overwritten", erased)
    await ensure_topics(settings, kafka)
    restored = await restore(
        kafka, segments, topic_names(settings), settings.embedded_tail, floors, None, compacted
    )
    log.info("recovered the kept log from %s: %s", segments.directory, restored.describe())
    return restored
