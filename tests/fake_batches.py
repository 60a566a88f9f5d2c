"""aiokafka's BatchBuilder, as far as devreg's record batches use it
(services/stream/record_batches.py): for hand-written producers in tests."""

from __future__ import annotations

from types import SimpleNamespace


class FakeBatch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    def append(
        self, *, key: bytes, value: bytes, timestamp: None, headers: object = ()
    ) -> SimpleNamespace:
        """The record's metadata: its offset within the batch, its create time (0 here)."""
        self.records.append((key, value))
        return SimpleNamespace(offset=len(self.records) - 1, timestamp=0)

    def close(self) -> None:
        return None
