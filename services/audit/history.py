"""A device's history from the log, with a verdict on its hash chain (`devreg history`).

Read from the events topic with a plain consumer (services/log/reader.py); every partition is
read, not just the key's (see `history`).
"""

from __future__ import annotations

import msgspec

from events import AnyEvent, decode_event
from events.identity import partition_key
from events.user_tokens import redacted
from projections.chain import Checked, Position, Verdict, check_chain
from projections.positions import Record
from services.kafka.clients import KafkaAccess
from services.log.reader import LogReader
from services.progress import Progress


class History(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    device_id: str
    chain: Verdict
    events: list[Checked]


async def history(
    kafka: KafkaAccess, topic: str, app_id: str, device_id: str, progress: Progress
) -> History:
    """Every event keyed by the device (its own, and the channels it created), checked."""
    key = partition_key(app_id, device_id)
    found: list[tuple[Position, AnyEvent]] = []
    async with LogReader(kafka) as reader:
        tps = await reader.partitions(topic)
        progress.total = sum((await reader.end_offsets(tps)).values())
        # Every partition, not just the key's: a producer with another partitioner (kcat's
        # default is not Java's) puts a device's commands, and so its events, elsewhere.
        async for batch in reader.read(dict.fromkeys(tps, 0)):
            progress.advance(len(batch))
            for r in batch:
                if r.key == key:
                    found.append((Position(r.partition, r.offset, r.timestamp), event_of(r)))
    events, verdict = check_chain(found)
    # Shown after the check (hashes cover the original): an old raw session token redacted
    shown = [msgspec.structs.replace(c, event=redacted(c.event)) for c in events]
    return History(app_id=app_id, device_id=device_id, chain=verdict, events=shown)


def event_of(record: Record) -> AnyEvent:
    try:
        return decode_event(record.value or b"")
    except msgspec.DecodeError as exc:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        raise ValueError(f"undecodable event at {where}: {exc}") from exc
