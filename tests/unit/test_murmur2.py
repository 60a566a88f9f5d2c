"""devreg's murmur2 picks the partition Kafka's default partitioner (aiokafka's) picks."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference
from hypothesis import given
from hypothesis import strategies as st

from events.identity import partition_key
from services.kafka.partitioner import key_partition, murmur2
from services.stream.ownership import Ownership


@given(st.binary(max_size=300))
def test_given_any_bytes_then_the_same_hash_as_the_java_clients(data: bytes) -> None:
    assert murmur2(data) == reference(data)


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=120), st.integers(1, 64))
def test_given_a_device_key_then_the_same_partition_as_aiokafkas_producer(
    app_id: str, device_id: str, partitions: int
) -> None:
    key, every = partition_key(app_id, device_id), list(range(partitions))
    expected = DefaultPartitioner()(key, every, every)
    assert key_partition(key, every, every) == expected
    assert Ownership("", partitions).partition_of(app_id, device_id) == expected
