"""The processor's side of the token index: claims and releases on the tokens topic
(services/tokens/records.py), sent with the events of the batch that decided them.

- a registration claims its token (and releases the token it replaced);
- a removal of the whole device (unregistered, expired, rejected, superseded) releases it;
- a forget sends a tombstone for every token the device ever claimed, so the index and,
  after compaction, the tokens topic keep no fingerprint of it.

The token's fingerprint needs the token: the sealed text is opened with the device's key.
After an erasure that key is gone: a registration decided again then claims nothing, which
is right, since its claim was sent the first time and the forget has since erased it.

Opening costs a key store read, an unwrap and an AES-GCM open per device: most of a burst of
expiries' releases (docs/benchmarks.md). So the fingerprint learned for a device's sealed
token is kept with the decisions (`token_holders`), and a later release or claim of that same
sealed text uses it instead. Sealing is deterministic (events/sealed.py): one sealed text is
one token under one key, so the kept fingerprint is the one opening would give, and the
records are the same whichever way it was found. A forget drops it with the fingerprints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import msgspec

from events import AnyEvent, DeviceForgotten, DeviceRegistered, DeviceState, sealed
from services.keys.keyring import Keyring
from services.stream.decision_store import DecisionBatch, Holder
from services.tokens import records
from services.tokens.records import Claim, Release

Key = tuple[str, str]
Out = tuple[int, bytes, bytes | None]  # (tokens partition, record key, value or tombstone)


class Transition(msgspec.Struct):
    """One decided command's change to a device: the state before and after, its events."""

    before: DeviceState | None
    after: DeviceState
    events: tuple[AnyEvent, ...]

    @property
    def forgets(self) -> bool:
        return any(isinstance(e, DeviceForgotten) for e in self.events)


def changes(
    keys: Sequence[Key],
    before: Sequence[DeviceState | None],
    after: Mapping[Key, DeviceState],
    events: Sequence[AnyEvent],
) -> list[Transition]:
    """The devices one decided command changed (an `ExpireRegistrations` names many), each
    with its own events; a device the command left as it was is no transition."""
    if len(keys) == 1:
        [key], [was] = keys, before
        now = after.get(key)
        return [] if now is None or now is was else [Transition(was, now, tuple(events))]
    by_device: dict[str, list[AnyEvent]] = {}  # grouped once: a command names up to 1000
    for event in events:
        by_device.setdefault(getattr(event, "device_id", ""), []).append(event)
    out = []
    for key, was in zip(keys, before, strict=True):
        now = after.get(key)
        if now is not None and now is not was:
            out.append(Transition(was, now, tuple(by_device.get(key[1], ()))))
    return out


class TokenClaims:
    def __init__(self, keyring: Keyring, index_key: bytes, partition_of: Callable[[str, str], int]):
        self._keyring = keyring
        self._index_key = index_key
        self._partition_of = partition_of

    async def _fingerprint(
        self, state: DeviceState | None, holders: dict[Key, Holder], batch: DecisionBatch
    ) -> str | None:
        """The fingerprint of the token `state` holds: the one kept for its sealed text, else
        the token opened (and the fingerprint kept, in `holders` and `batch`)."""
        if state is None or not state.exists or not state.device_token:
            return None
        key = (state.app_id, state.device_id)
        held = holders.get(key)
        if held is not None and held[0] == state.device_token:
            return held[1]
        token = await self._keyring.open(*key, "device_token", state.device_token)
        if token == sealed.ERASED or sealed.is_sealed(token):
            return None
        fp = records.fingerprint(self._index_key, state.app_id, token)
        if sealed.is_sealed(state.device_token):  # an event from before sealing: keep no token
            partition = self._partition_of(state.app_id, records.routing_id(fp))
            holders[key] = batch.holders[key] = (state.device_token, fp, partition)
        return fp

    def _out(
        self, key: Key, fp: str, value: Claim | Release | None, holders: dict[Key, Holder]
    ) -> Out:
        """The record for `fp`, on its partition: the one kept with it (no murmur2 of the
        fingerprint's long key per released device: docs/benchmarks.md), else worked out."""
        held = holders.get(key)
        if held is not None and held[1] == fp:
            partition = held[2]
        else:
            partition = self._partition_of(key[0], records.routing_id(fp))
        slot = (key[0], fp, key[1])
        return partition, records.record_key(slot), records.record_value(value)

    async def records(
        self,
        transitions: Sequence[Transition],
        batch: DecisionBatch,
        known: dict[Key, set[str]],
        holders: dict[Key, Holder],
    ) -> list[Out]:
        """The tokens topic records of `transitions`, in order; the fingerprints each device
        claimed go into `batch` (`known`: those stored or pending before the batch, of the
        devices `transitions` forget at least; `holders`:
        the fingerprints of the devices' sealed tokens, likewise, updated as learned)."""
        out: list[Out] = []
        for t in transitions:
            key = (t.after.app_id, t.after.device_id)
            before = await self._fingerprint(t.before, holders, batch)
            if t.forgets:
                claimed = known.get(key, set()) | batch.fingerprints.pop(key, set())
                for fp in sorted(claimed | ({before} if before else set())):
                    out.append(self._out(key, fp, None, holders))
                batch.unfingerprinted.add(key)
                known.pop(key, None)
                holders.pop(key, None)
                batch.holders.pop(key, None)
                continue
            registered = [e for e in t.events if isinstance(e, DeviceRegistered)]
            after = await self._fingerprint(t.after, holders, batch)
            version = t.after.version
            if before and before != after:
                out.append(self._out(key, before, Release(version), holders))
            if registered and after:
                claim = Claim(registered[-1].event_id, version, registered[-1].occurred_at)
                out.append(self._out(key, after, claim, holders))
                batch.fingerprints.setdefault(key, set()).add(after)
        return out
