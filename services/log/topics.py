"""devreg's topics, created idempotently at start-up with aiokafka's admin client."""

from __future__ import annotations

import logging

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from services.config import Settings
from services.kafka import clients
from services.kafka.clients import KafkaAccess

log = logging.getLogger(__name__)
_TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno

# The log is the source of truth: never compacted, never aged out.
_KEEP_FOREVER = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
# The keys topic (services/keys/records.py) is compacted, with bounds on how long an erased key
# may stay readable on Apache Kafka (docs/audit.md, "What an erasure leaves"): a segment rolls
# within an hour (the active segment is never compacted), a record superseded by its
# tombstone is compacted within a day, and the tombstone itself is dropped a day after that.
# The embedded broker never compacts: devreg's archives drop erased keys instead.
KEYS_COMPACTION = {
    "cleanup.policy": "compact",
    "segment.ms": str(3_600_000),
    "min.compaction.lag.ms": "0",
    "max.compaction.lag.ms": str(86_400_000),
    "delete.retention.ms": str(86_400_000),
    "min.cleanable.dirty.ratio": "0.01",
}


class TopicError(RuntimeError):
    """The topics exist with a shape devreg cannot work with."""


def wanted_topics(settings: Settings) -> list[NewTopic]:
    n, replicas = settings.partitions, settings.replication_factor
    insync = {"min.insync.replicas": str(settings.min_insync_replicas)}
    configs = {**_KEEP_FOREVER, **insync}
    return [
        NewTopic(settings.commands_topic, n, replicas, topic_configs=dict(configs)),
        NewTopic(settings.events_topic, n, replicas, topic_configs=dict(configs)),
        NewTopic(settings.outcomes_topic, n, replicas, topic_configs=dict(configs)),
        NewTopic(settings.dlq_topic, 1, replicas, topic_configs=dict(configs)),
        *(
            NewTopic(topic, n, replicas, topic_configs={**KEYS_COMPACTION, **insync})
            for topic in compacted_topics(settings)
        ),
    ]


def compacted_topics(settings: Settings) -> list[str]:
    """The keys topic and the tokens topic (services/tokens/records.py), compacted alike: each
    holds what an erasure must be able to remove."""
    return [settings.keys_topic, settings.tokens_topic]


async def ensure_topics(settings: Settings, kafka: KafkaAccess) -> dict[str, int]:
    """Create what is missing; check commands and events are co-partitioned. Returns counts."""
    admin = clients.admin(kafka)
    await admin.start()
    try:
        response = await admin.create_topics(wanted_topics(settings))
        for topic, code, message in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise TopicError(f"cannot create topic {topic}: error {code} {message}")
            if code == 0:
                log.info("created topic %s", topic)
        described = await admin.describe_topics([t.name for t in wanted_topics(settings)])
    finally:
        await admin.close()
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    commands = counts[settings.commands_topic]
    for other in (settings.events_topic, *compacted_topics(settings)):
        if counts[other] != commands:
            raise TopicError(
                f"{settings.commands_topic} has {commands} partitions but {other} has"
                f" {counts[other]}: they must be co-partitioned (same count and key)"
            )
    if commands != settings.partitions:
        log.warning(
            "topics have %d partitions, DEVREG_PARTITIONS=%d: using the topics' count",
            commands,
            settings.partitions,
        )
    return counts
