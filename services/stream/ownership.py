"""Which worker owns which partition, carried by Kafka's own group protocol.

Each member puts its advertised URL in its join metadata; the group leader assigns partition
numbers to members (the same numbers of every devreg topic to the same member, so a worker
owns a device's commands, events and projection rows together) and hands every member the
whole partition → URL map in its assignment. Nothing home-made decides membership: Kafka does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

import msgspec
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

from events.identity import partition_key
from services.kafka.partitioner import partition_for

log = logging.getLogger(__name__)


class Ownership:
    def __init__(self, url: str, partitions: int):
        self.url = url
        self.partitions = partitions
        self.owners: dict[int, str] = {}  # partition -> advertised URL, as of the last rebalance
        # Told the partitions this worker owns, the moment the group's table says so (on the
        # consumer's thread): the hand-over gate must close before a request can see them.
        self.on_update: Callable[[list[int]], object] | None = None

    def partition_of(self, app_id: str, device_id: str) -> int:
        """The partition Kafka's default partitioner (murmur2) gives the device's key."""
        return partition_for(partition_key(app_id, device_id), self.partitions)

    def owner(self, partition: int) -> str | None:
        return self.owners.get(partition)

    def owned(self) -> list[int]:
        """The partitions this worker owns, in order (none mid-rebalance)."""
        return sorted(p for p, url in self.owners.items() if url == self.url)

    def local(self) -> frozenset[int] | None:
        """The partitions this worker serves; None when it serves them all (a filter-free
        query), an empty set while it owns none (mid-rebalance)."""
        mine = frozenset(self.owned())
        return None if len(mine) == self.partitions else mine

    def peers(self) -> list[str]:
        return sorted(set(self.owners.values()) - {self.url})

    def update(self, owners: Mapping[int, str]) -> None:
        if dict(owners) != self.owners:
            mine = sorted(p for p, url in owners.items() if url == self.url)
            log.info("partition ownership: this worker owns %s of %d", mine, self.partitions)
        if self.on_update is not None:
            self.on_update(sorted(p for p, url in owners.items() if url == self.url))
        self.owners = dict(owners)


class CoPartitionedAssignor:
    """An aiokafka partition assignor (duck-typed: name, metadata, assign, on_assignment)."""

    name = "devreg-copartitioned"
    version = 0

    def __init__(self, ownership: Ownership):
        self.ownership = ownership

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(
            self.version, sorted(topics), self.ownership.url.encode()
        )

    def assign(
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        # Members sorted by URL: the same workers always get the same partitions back.
        ordered = sorted(members, key=lambda m: (members[m].user_data or b"", m))
        topics = sorted({t for m in members.values() for t in m.subscription})
        numbers = sorted({p for t in topics for p in cluster.partitions_for_topic(t) or ()})
        owner_of = {p: ordered[i % len(ordered)] for i, p in enumerate(numbers)}
        urls = {p: (members[m].user_data or b"").decode() or m for p, m in owner_of.items()}
        table = msgspec.json.encode({str(p): url for p, url in urls.items()})
        assignments = {}
        for member, metadata in members.items():
            per_topic = [
                ConsumerProtocolMemberAssignment.Assignment(
                    topic,
                    sorted(
                        p
                        for p in cluster.partitions_for_topic(topic) or ()
                        if owner_of.get(p) == member
                    ),
                )
                for topic in sorted(metadata.subscription)
            ]
            assignments[member] = ConsumerProtocolMemberAssignment(self.version, per_topic, table)
        return assignments

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        table = msgspec.json.decode(assignment.user_data or b"{}", type=dict[str, str])
        self.ownership.update({int(p): url for p, url in table.items()})

    def on_generation_assignment(self, generation: int) -> None:
        """aiokafka calls this on some assignors; nothing to do."""
