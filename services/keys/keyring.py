"""A worker's data keys: created durable before anything is sealed with them, found again by
a worker that takes a partition over, and erased when a device is forgotten.

A key is written to the local key store (SQLite) and to the keys topic, and Kafka
acknowledges it, before `ensure` returns it: nothing sealed with a key can be published
before the key can be read by every worker and by the CLI. Concurrent creations share one
transaction and one round trip (group commit).

Only the worker that owns a partition writes its keys. On Apache Kafka a worker handed
partitions drops what it held of them and reads their keys again from the topic at once, in
one read that a request needing one of them waits for (services/keys/reads.py), so a key
erased while another worker owned the partition is not kept here.

In the embedded mode every key record is kept (services/log/journal.py) before `ensure` or
`erase` returns, and no key is written while the broker's topics are renewed (`gate`,
services/log/rollover.py). There this worker alone writes the keys topic and the kept log
never drops a tombstone, so a handed partition is read on from the key store's position;
the keyring's own creations and erasures move that position, an erasure only in the
transaction that deletes its keys (services/keys/applied.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence

from aiokafka import AIOKafkaProducer

from events import sealed
from projections.positions import Record
from services.clock import now_ms
from services.kafka.clients import KafkaAccess
from services.keys import cipher, records
from services.keys.applied import AppliedOffsets
from services.keys.held import HeldKeys
from services.keys.reads import PartitionReads
from services.keys.store import KeyStore, Slot, StoredKey
from services.log.journal import Keep
from services.metrics import Metrics
from services.stream.gate import Gate
from services.stream.record_batches import RecordBatches

log = logging.getLogger(__name__)
DeviceKey = tuple[str, str]


class Keyring:
    def __init__(
        self,
        store: KeyStore,
        kek: bytes,
        producer: AIOKafkaProducer,
        kafka: KafkaAccess,
        topic: str,
        partition_of: Callable[[str, str], int],
        clock: Callable[[], int] = now_ms,
        keep: Keep | None = None,
        gate: Gate | None = None,
        metrics: Metrics | None = None,
    ):
        self._keep = keep
        self._metrics = metrics
        self._gate = gate or Gate()
        self._store = store
        self._kek = kek  # wraps the keys created here
        self._producer = producer
        self.topic = topic
        self._partition_of = partition_of
        self._clock = clock
        # The embedded mode: this worker alone writes the keys topic, and the kept log keeps
        # every tombstone, so a start reads on from the positions the store reached.
        self._applied = (
            AppliedOffsets(topic) if keep is not None and kafka.kept_log is not None else None
        )
        # What is held in memory, let go together (services/keys/held.py).
        self._held = HeldKeys(kek)
        self._reads = PartitionReads(store, kafka, topic, self._held.let_go, self._applied)
        self._queued: dict[DeviceKey, asyncio.Future[tuple[str, bytes]]] = {}
        self._flushing: asyncio.Future[None] | None = None

    # -- reading -----------------------------------------------------------------------------

    async def current(self, app_id: str, device_id: str) -> tuple[str, bytes] | None:
        """The device's newest key: the one new values are sealed with."""
        known = self._held.current((app_id, device_id))
        if known is not None:
            return known
        await self._catch_up(self._partition_of(app_id, device_id))
        stored = await self._store.keys_of(app_id, device_id)
        return self._held.hold(stored[-1]) if stored else None

    async def key(self, app_id: str, device_id: str, key_id: str) -> bytes | None:
        held = self._held.key((app_id, device_id, key_id))
        if held is not None:
            return held
        await self._catch_up(self._partition_of(app_id, device_id))
        for stored in await self._store.keys_of(app_id, device_id):
            if stored.key_id == key_id:
                return self._held.unwrap(stored)
        return None  # erased (or never this device's)

    async def open(self, app_id: str, device_id: str, field: str, text: str) -> str:
        """The value a sealed text holds, ERASED if its key is gone; other text as it is."""
        value = self._remembered(app_id, device_id, field, text)
        return value if value is not None else await self._open(app_id, device_id, field, text)

    async def open_all(self, app_id: str, field: str, texts: Sequence[DeviceKey]) -> list[str]:
        """Each (device id, text) opened as `open` does; those remembered without an await,
        which a page of a hundred would otherwise pay a hundred times."""
        values = [self._remembered(app_id, device_id, field, text) for device_id, text in texts]
        return [
            value if value is not None else await self._open(app_id, device_id, field, text)
            for value, (device_id, text) in zip(values, texts, strict=True)
        ]

    def _remembered(self, app_id: str, device_id: str, field: str, text: str) -> str | None:
        """The value of `text` if it takes no key to tell: not sealed, or opened lately with
        a key still held; None if it must be opened."""
        if not sealed.is_sealed(text):
            return text
        return self._held.opened.get(app_id, device_id, field, text)

    async def _open(self, app_id: str, device_id: str, field: str, text: str) -> str:
        kid = sealed.key_id(text)
        if kid is None:
            return text
        key = self._held.key((app_id, device_id, kid))  # most often: no await at all
        if key is None:
            key = await self.key(app_id, device_id, kid)
        # No await from here on: the key was held when it was found, and stays held until the
        # value is remembered, so an erasure that lets the key go drops the value with it.
        value = None
        if key is not None:
            value = cipher.open_sealed(text, key, cipher.context(app_id, device_id, field))
            if self._metrics is not None:
                self._metrics.inc("devreg_tokens_opened_total")
        if value is None:
            return sealed.ERASED
        self._held.opened.put(app_id, device_id, field, text, value)
        return value

    def seal(
        self,
        app_id: str,
        device_id: str,
        field: str,
        value: str,
        key: tuple[str, bytes],
        remember: bool = False,
    ) -> str:
        """`value` sealed with `key`. `remember`: the sealed text is the one opened next (a
        registration's token: the token index's fingerprint when it is decided, then reads),
        so it is remembered as opened (docs/design.md, "Opened tokens are remembered"). Only
        while `key` is still the device's current key: an erasure that let the key go since
        the caller got it must not find the value here afterwards."""
        kid, data_key = key
        text = cipher.seal(kid, data_key, cipher.context(app_id, device_id, field), value)
        if remember and self._held.current((app_id, device_id)) == key:
            self._held.opened.put(app_id, device_id, field, text, value)
        return text

    # -- creating ----------------------------------------------------------------------------

    async def ensure(self, app_id: str, device_id: str) -> tuple[str, bytes]:
        """The device's current key, created (durable, acknowledged) if it has none."""
        return (await self.ensure_all([(app_id, device_id)]))[0]

    async def ensure_all(self, devices: Sequence[DeviceKey]) -> list[tuple[str, bytes]]:
        """Each device's current key, in order. Those not held here go to the next group:
        looked up in the store, and created where it has none, with one query, one
        transaction and one round trip for every caller of this loop turn."""
        found: dict[DeviceKey, tuple[str, bytes]] = {}
        waiting: dict[DeviceKey, asyncio.Future[tuple[str, bytes]]] = {}
        for device in devices:
            held = self._held.current(device)
            if held is not None:
                found[device] = held
            elif device not in waiting:
                future = self._queued.get(device)
                if future is None:
                    future = asyncio.get_running_loop().create_future()
                    self._queued[device] = future
                waiting[device] = future
        if waiting:
            if self._flushing is None or self._flushing.done():
                self._flushing = asyncio.ensure_future(self._flush())
            keys = await asyncio.shield(asyncio.gather(*waiting.values()))
            found.update(zip(waiting, keys, strict=True))
        return [found[device] for device in devices]

    async def _flush(self) -> None:
        """Create the queued keys, one group at a time. Failures go to the callers waiting
        (an HTTP request answers 503), not into an unobserved task."""
        await asyncio.sleep(0)  # let the requests of this loop turn join the batch
        while self._queued:
            batch, self._queued = self._queued, {}
            try:
                created = await self._create(list(batch))
            except Exception as exc:
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
                continue
            for device, future in batch.items():
                if not future.done():
                    future.set_result(created[device])

    async def _create(self, devices: list[DeviceKey]) -> dict[DeviceKey, tuple[str, bytes]]:
        """The group's keys: found in the store (one query), or else created. Looked up here,
        where groups run one at a time, so two callers never make two keys for a device."""
        for partition in {self._partition_of(*device) for device in devices}:
            await self._catch_up(partition)
        held = {d: self._held.current(d) for d in devices}
        created = {d: key for d, key in held.items() if key is not None}
        missing = [d for d in devices if d not in created]
        for device, newest in (await self._store.newest_keys(missing)).items():
            created[device] = self._held.hold(newest)
        stamp = self._clock()
        stored: list[StoredKey] = []
        for app_id, device_id in (d for d in missing if d not in created):
            kid, key = cipher.new_key_id(stamp), cipher.new_key()
            slot = (app_id, device_id, kid)
            wrapped = cipher.wrap(self._kek, key, records.record_key(slot))
            partition = self._partition_of(app_id, device_id)
            stored.append(StoredKey(app_id, device_id, kid, partition, wrapped))
            created[(app_id, device_id)] = (kid, key)
        if not stored:
            return created
        await self._store.write(stored)
        published = await self._publish(
            [(s.partition, (s.app_id, s.device_id, s.key_id), s.wrapped) for s in stored]
        )
        if self._applied is not None:
            # Stored before they were published: their offsets are applied already.
            self._applied.applied(published)
            self._store.advance(self._applied.positions())
        # Current once durable and acknowledged: a caller of a later turn that finds one here
        # may seal with it at once.
        for s in stored:
            self._held.remember(
                (s.app_id, s.device_id, s.key_id), created[(s.app_id, s.device_id)][1]
            )
            self._held.hold(s)
        return created

    async def _publish(self, items: Iterable[tuple[int, Slot, bytes | None]]) -> list[Record]:
        """As record batches per partition, acknowledged (and kept) before returning; returns
        the records as the log holds them in the embedded mode (else none)."""
        async with self._gate.passage():
            batches = RecordBatches(self._producer, keep=self._keep is not None)
            for partition, slot, wrapped in items:
                value = None if wrapped is None else records.record_value(wrapped)
                await batches.add(self.topic, partition, records.record_key(slot), value)
            await batches.flush()
            if self._keep is None:
                await batches.acknowledged()
                return []
            kept = await batches.acknowledged_records()
            await self._keep(kept, batches.sent_per_partition)
            return kept

    # -- erasing -----------------------------------------------------------------------------

    async def erase(self, devices: Iterable[DeviceKey]) -> int:
        """Delete every key of `devices` here and tombstone it on the keys topic; returns how
        many keys were erased. Idempotent: a device erased already has nothing left."""
        doomed: list[StoredKey] = []
        for app_id, device_id in set(devices):
            await self._catch_up(self._partition_of(app_id, device_id))
            doomed.extend(await self._store.keys_of(app_id, device_id))
        if not doomed:
            return 0
        slots = [(k.app_id, k.device_id, k.key_id) for k in doomed]
        self._held.let_go(slots)
        # The tombstones first: a crash before the store lets go of the keys decides the
        # forget again and finds them to tombstone again. The other way round, a crash in
        # between would leave the keys on the topic (and in the kept log) with nothing left
        # here to erase them by.
        tombstones = await self._publish(
            (k.partition, slot, None) for k, slot in zip(doomed, slots, strict=True)
        )
        # The position passes the tombstones in the transaction that deletes their keys, and
        # not before (services/keys/applied.py): read on from past them after a crash, the
        # keys would come back.
        if self._applied is None:
            await self._store.write((), slots)
        else:
            await self._store.write((), slots, self._applied.positions(also=tombstones))
            self._applied.applied(tombstones)
        # Again, now that the store holds them no more: a reader that asked while the
        # tombstones were on their way found the keys in the store and remembered them (and
        # what they opened). Nothing can find them after this.
        self._held.let_go(slots)
        await self._store.erase_traces()
        return len(doomed)

    # -- taking partitions over --------------------------------------------------------------

    async def handed(self, partitions: Iterable[int]) -> None:
        """Partitions this worker was just handed: what it held of them may be stale."""
        chosen = set(partitions)
        if not chosen:
            return
        self._held.let_go_where(lambda app_id, device: self._partition_of(app_id, device) in chosen)
        await self._reads.handed(chosen)

    def caught_up(self, partition: int) -> bool:
        return self._reads.caught_up(partition)

    def read(self, partition: int) -> bool:
        """True once the partition's keys were read (services/keys/reads.py)."""
        return self._reads.read(partition)

    async def _catch_up(self, partition: int) -> None:
        await self._reads.catch_up(partition)
