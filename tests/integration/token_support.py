"""Helpers for the token lifecycle tests: admin calls, partitions and fingerprints of test
ids (the tests share the workers' key-encryption key, tests/support.py TEST_KEK)."""

from __future__ import annotations

import base64
import itertools
import uuid
from typing import Any

from events.identity import partition_key
from services.kafka.partitioner import partition_for
from services.tokens import records
from tests.support import ADMIN_KEYS, PARTITIONS, TEST_KEK, WorkerProcess, call

INDEX_KEY = records.index_key(base64.b64decode(TEST_KEK))


async def admin(
    worker: WorkerProcess, method: str, path: str, body: Any = None, app_id: str = "app-a"
) -> tuple[int, Any]:
    headers = {"X-Devreg-Admin-Key": ADMIN_KEYS[app_id]}
    return await call(method, f"{worker.base_url}/admin/{app_id}/{path}", body, headers)


def device_partition(app_id: str, device_id: str) -> int:
    return partition_for(partition_key(app_id, device_id), PARTITIONS)


def token_partition(app_id: str, token: str) -> int:
    fp = records.fingerprint(INDEX_KEY, app_id, token)
    return device_partition(app_id, records.routing_id(fp))


def device_on(app_id: str, partition: int, prefix: str = "dev") -> str:
    """A fresh device id whose commands land on `partition`."""
    for n in itertools.count():
        candidate = f"{prefix}-{uuid.uuid4().hex[:8]}-{n}"
        if device_partition(app_id, candidate) == partition:
            return candidate
    raise AssertionError("unreachable")


def token_on(app_id: str, partition: int) -> str:
    """A fresh token whose fingerprint lands on tokens `partition`."""
    for _ in range(10_000):
        candidate = f"tok-{uuid.uuid4().hex}"
        if token_partition(app_id, candidate) == partition:
            return candidate
    raise AssertionError("no token found for the partition")
