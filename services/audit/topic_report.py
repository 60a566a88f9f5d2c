"""`devreg topics`: create devreg's topics (idempotently) and describe them with offsets."""

from __future__ import annotations

import msgspec

from services.config import Settings
from services.kafka.clients import KafkaAccess
from services.log.reader import LogError, LogReader
from services.log.topics import ensure_topics, topic_names

END_NOTE = (
    "end offsets are what the broker reports; the embedded Tansu broker under-reports them"
    " when the last batch of a partition holds several records (docs/design.md §10)"
)


class PartitionOffsets(msgspec.Struct, frozen=True):
    beginning: int
    end: int


class TopicReport(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    exists: bool
    partitions: int = 0
    records: int = 0  # end - beginning, summed: approximate where ends are
    offsets: dict[int, PartitionOffsets] = {}


class TopicsReport(msgspec.Struct, frozen=True, kw_only=True):
    bootstrap: str
    created: bool
    note: str
    topics: dict[str, TopicReport]


async def describe(settings: Settings, kafka: KafkaAccess, create: bool) -> TopicsReport:
    if create:
        await ensure_topics(settings, kafka)
    topics: dict[str, TopicReport] = {}
    async with LogReader(kafka) as reader:
        for name in topic_names(settings):
            try:
                tps = await reader.partitions(name)
            except LogError:
                topics[name] = TopicReport(exists=False)
                continue
            starts = await reader.beginning_offsets(tps)
            ends = await reader.end_offsets(tps)
            offsets = {tp.partition: PartitionOffsets(starts[tp], ends[tp]) for tp in tps}
            topics[name] = TopicReport(
                exists=True,
                partitions=len(tps),
                records=sum(o.end - o.beginning for o in offsets.values()),
                offsets=offsets,
            )
    return TopicsReport(bootstrap=kafka.bootstrap, created=create, note=END_NOTE, topics=topics)
