"""faust does not ack devreg's records (services/kafka/faust_app.py, `devreg_topics`): the
stores hold the positions, and faust's acked offsets of a partition with a gap it never saw
(records handed over at Kafka's acknowledgement, a renewal's filler) would be kept forever
and sorted at every commit, a cost that grew with every record of the 1M long run
(docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import faust

from services.config import load_settings
from services.kafka.faust_app import devreg_topics


async def test_given_the_worker_topics_then_faust_acks_none_of_them(tmp_path: Path) -> None:
    # Given the topics a worker's faust app reads
    settings = load_settings({"DEVREG_DATA_DIR": str(tmp_path), "KAFKA_BOOTSTRAP": "k:9092"})
    topics = devreg_topics(faust.App("t", broker="kafka://k:9092"), settings)

    # Then they are devreg's three, each read raw, none acked
    names = [name for topic in topics for name in topic.topics]
    assert names == [settings.commands_topic, settings.events_topic, settings.tokens_topic]
    assert [topic.acks for topic in topics] == [False, False, False]
    assert {topic.key_serializer for topic in topics} == {"raw"}
