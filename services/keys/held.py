"""What the keyring holds in memory: unwrapped keys, each device's current key, and the values
opened with them. All three are let go together, which is what keeps an erasure whole: a key
gone from the key store is neither used to seal nor to open again, and nothing it opened is
served from here (services/keys/keyring.py says when keys are let go).

Bounded maps that forget their oldest entries first: OrderedDicts, whose popitem is O(1); a
plain dict's `next(iter(d))` walks past every entry deleted before it, and each new key cost
more once a registry passed CACHED_KEYS devices (docs/benchmarks.md, "Figures behind the code").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from services.keys import cipher, records
from services.keys.opened import OpenedValues
from services.keys.store import Slot, StoredKey

DeviceKey = tuple[str, str]
# Unwrapped keys kept in memory (each ~150 bytes with its slot): a registry's busiest devices;
# the rest are read from the key store again when needed.
CACHED_KEYS = 100_000
# Devices whose opened token is remembered (the sealed text, the value and the entry): a page
# of 100 then opens no token it served lately (docs/benchmarks.md, "Figures behind the code"
# has what it saves and what it costs).
CACHED_OPENED = 100_000


class HeldKeys:
    def __init__(self, kek: bytes):
        self._kek = kek
        self._unwrapped: OrderedDict[Slot, bytes] = OrderedDict()
        # Each device's newest key as the key store holds it, so sealing for a known device
        # asks SQLite nothing; changed wherever the store's keys change.
        self._current: OrderedDict[DeviceKey, tuple[str, bytes]] = OrderedDict()
        self.opened = OpenedValues(CACHED_OPENED)

    def key(self, slot: Slot) -> bytes | None:
        return self._unwrapped.get(slot)

    def current(self, device: DeviceKey) -> tuple[str, bytes] | None:
        return self._current.get(device)

    def unwrap(self, stored: StoredKey) -> bytes:
        """The stored key unwrapped, and remembered."""
        slot = (stored.app_id, stored.device_id, stored.key_id)
        key = self._unwrapped.get(slot)
        if key is None:
            key = cipher.unwrap(self._kek, stored.wrapped, records.record_key(slot))
            self.remember(slot, key)
        return key

    def remember(self, slot: Slot, key: bytes) -> None:
        """A key unwrapped (or just made)."""
        if len(self._unwrapped) >= CACHED_KEYS:
            self._unwrapped.popitem(last=False)  # the oldest remembered
        self._unwrapped[slot] = key

    def hold(self, newest: StoredKey) -> tuple[str, bytes]:
        """`newest`, the device's newest stored key, as its current key (remembered)."""
        held = newest.key_id, self.unwrap(newest)
        if len(self._current) >= CACHED_KEYS:
            self._current.popitem(last=False)
        self._current[(newest.app_id, newest.device_id)] = held
        return held

    def let_go(self, slots: Iterable[Slot]) -> None:
        """Keys gone from the store: neither remembered nor current any more, and nothing
        they opened remembered either."""
        for slot in slots:
            self._unwrapped.pop(slot, None)
            self.opened.drop(slot[0], slot[1])
            device = (slot[0], slot[1])
            held = self._current.get(device)
            if held is not None and held[0] == slot[2]:
                del self._current[device]

    def let_go_where(self, gone: Callable[[str, str], bool]) -> None:
        """Everything held for the devices `gone` names (partitions handed over)."""
        self._unwrapped = OrderedDict(
            (s, k) for s, k in self._unwrapped.items() if not gone(s[0], s[1])
        )
        self._current = OrderedDict((d, k) for d, k in self._current.items() if not gone(*d))
        self.opened.drop_where(gone)
