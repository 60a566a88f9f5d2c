"""Proving a SQLite store's positions against the broker's log before serving from it.

The embedded broker keeps its log in memory: after a restart it may hold less history than a
store claims (or a different one). A store is trusted only if, for every partition it has
applied, the record just before its resume position is on the broker with the same
fingerprint. Otherwise it is discarded, loudly, and rebuilt from the log.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from projections.positions import Position, fingerprint
from projections.sqlite import CorruptStore
from services.kafka import clients
from services.kafka.clients import KafkaAccess

log = logging.getLogger(__name__)
_ABSENT = "absent"


async def mismatches(
    kafka: KafkaAccess, positions: list[Position], deadline_s: float = 5.0
) -> list[str]:
    """Reasons the broker's log does not back `positions` (empty when it does)."""
    wanted = {TopicPartition(p.topic, p.partition): p for p in positions if p.next_offset > 0}
    if not wanted:
        return []
    consumer = clients.consumer(kafka, fetch_max_wait_ms=50)
    await consumer.start()
    found: dict[TopicPartition, str] = {}
    try:
        known_topics = await consumer.topics()
        absent = [f"topic {tp.topic} is missing" for tp in wanted if tp.topic not in known_topics]
        if absent:
            return sorted(set(absent))
        consumer.assign(list(wanted))
        # The embedded broker under-reports an end offset (as the last batch's base + 1) but
        # never reports 0 for a partition holding records: an end of 0 means an empty log
        # (a fresh broker), known at once instead of after the fetch deadline.
        ends = await consumer.end_offsets(list(wanted))
        for tp, position in wanted.items():
            if ends.get(tp, 0) == 0:
                found[tp] = _ABSENT
                consumer.pause(tp)
            consumer.seek(tp, position.next_offset - 1)
        end = time.monotonic() + deadline_s
        while len(found) < len(wanted) and time.monotonic() < end:
            batches = await consumer.getmany(timeout_ms=200, max_records=1)
            for tp, records in batches.items():
                if records and tp not in found:
                    found[tp] = fingerprint(records[0].key, records[0].value)
                    consumer.pause(tp)
    finally:
        await consumer.stop()
    reasons = []
    for tp, position in sorted(wanted.items()):
        at = f"{tp.topic}[{tp.partition}]@{position.next_offset - 1}"
        if found.get(tp, _ABSENT) == _ABSENT:
            reasons.append(f"{at} is not on the broker")
        elif found[tp] != position.fingerprint:
            reasons.append(f"{at} on the broker differs from the one applied")
    return reasons


def discard(path: Path, reasons: list[str]) -> Path:
    """Move a store (and its WAL files) aside; return where it went."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.discarded-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(target.with_name(target.name + suffix))
    log.error(
        "DISCARDED %s: it cannot be trusted (%s%s). Moved to %s; it will be rebuilt from the log.",
        path,
        "; ".join(reasons[:3]),
        f" and {len(reasons) - 3} more" if len(reasons) > 3 else "",
        target,
    )
    return target


async def open_checked(path: Path, opener: Any, kafka: KafkaAccess) -> Any:
    """Open a store; if it is corrupt, or the broker does not hold the history it claims,
    discard it (loudly) and start a fresh one, which the log then rebuilds."""
    try:
        store = await opener(path)
    except CorruptStore as exc:
        discard(path, [str(exc)])
        return await opener(path)
    positions: list[Position] = await store.positions()
    reasons = await mismatches(kafka, positions)
    if not reasons:
        return store
    await store.close()
    discard(path, reasons)
    return await opener(path)
