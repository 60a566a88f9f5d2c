"""The broker-level steps of a renewal of the embedded broker's topics
(services/log/rollover.py says when and why): reading what the broker holds past the kept
log (step 2), deleting and creating the topics (step 3) and giving them their tails (step 4,
services/log/restore.py), again where someone else wrote to them first
(services/log/foreign.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient

from projections.positions import Record
from services.config import Settings
from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.kafka.raw_produce import RawProducer
from services.log import foreign, highwater
from services.log.restore import ForeignWrites, Restored, give, prepare
from services.log.segments import SegmentLog
from services.log.topics import compacted_topics, wanted_topics
from services.metrics import Metrics

log = logging.getLogger(__name__)
TP = tuple[str, int]
TRIES = 5
_FOREIGN_BACKOFF_S = 0.05
_BEYOND_DEADLINE_S = 10.0


class Backlog(Exception):
    """More records past the kept log than a renewal should copy."""


class RolloverError(RuntimeError):
    """The broker's topics could not be made again: the worker stops (a restart recovers)."""


async def made_again(
    settings: Settings,
    kafka: KafkaAccess,
    segments: SegmentLog,
    topics: list[str],
    floors: Mapping[TP, int],
    beyond: dict[TP, list[Record]],
    metrics: Metrics,
) -> Restored:
    """The topics deleted, created and given their tails and `beyond`. Each partition's
    first batch is read from the kept log and built, and the connections opened, before the
    topics are made, and all are sent the moment they exist. Where someone else wrote to
    them first, they are made again and what it wrote is given back after the tails."""
    admin = clients.admin(kafka)
    await admin.start()
    try:
        async with RawProducer(kafka) as raw:
            for attempt in range(TRIES):
                if attempt:
                    # others' sends racing the deletion finish before it is tried again
                    await asyncio.sleep(_FOREIGN_BACKOFF_S * attempt)
                plan = prepare(
                    segments,
                    topics,
                    settings.embedded_tail,
                    floors,
                    beyond,
                    compacted_topics(settings),
                )
                await recreate(settings, admin)
                try:
                    return await give(raw, plan)
                except ForeignWrites as exc:
                    others = await foreign.written_by_others(kafka, topics, exc.placed)
                    beyond = foreign.carried_over(beyond, others, segments.ends())
                    count = sum(map(len, others.values()))
                    metrics.inc("devreg_embedded_rollover_foreign_records_total", count)
                    log.warning(
                        "%s: %d records of others are given back after the tails", exc, count
                    )
    finally:
        await admin.close()
    raise RolloverError(f"others kept writing to the fresh topics: {TRIES} tries")


async def read_beyond(
    kafka: KafkaAccess, topics: list[str], kept_ends: Mapping[TP, int], limit: int
) -> dict[TP, list[Record]]:
    """Every record the broker holds past the kept log's end, per partition of `topics`;
    raises Backlog past `limit` records."""
    try:
        return await highwater.read_to_highwater(
            kafka, topics, lambda tp: kept_ends.get(tp, 0), _BEYOND_DEADLINE_S, limit=limit
        )
    except highwater.TooMany as exc:
        raise Backlog() from exc
    except highwater.Unread as exc:
        raise RolloverError(
            f"could not read the broker's records past the kept log: {exc}"
        ) from exc


async def recreate(settings: Settings, admin: AIOKafkaAdminClient) -> None:
    """Delete devreg's topics and create them again, empty, with devreg's settings."""
    wanted = {t.name: t for t in wanted_topics(settings)}
    names = list(wanted)
    for _ in range(TRIES):
        await admin.delete_topics(names)
        response = await admin.create_topics([wanted[name] for name in names])
        names = [topic for topic, code, _ in response.topic_errors if code != 0]
        if not names:
            return
        log.warning("topics %s were created by someone else meanwhile: again", names)
    raise RolloverError(f"could not create {names} again")
