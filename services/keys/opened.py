"""What the keyring opened lately: the value a device's sealed text held, remembered by
device, so reading it again costs a dictionary lookup instead of an AES-GCM opening (a page
of a hundred devices opens a hundred tokens; docs/benchmarks.md, "The read paths since the
token lifecycle").

Nothing here is ever a reason to show a value: an entry is only as good as the key that
opened it, and the keyring drops a device's entries in the same step as it lets go of any of
the device's keys (an erasure, a tombstone read from the keys topic, a partition handed over).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

DeviceKey = tuple[str, str]


class OpenedValues:
    """At most `limit` devices, the least recently read forgotten first. One entry per
    device: the token that answers read, whatever else (a history) was opened since."""

    def __init__(self, limit: int):
        self._limit = limit
        # device -> (field, sealed text, value). An OrderedDict: forgetting the oldest is
        # popitem(last=False), O(1); a plain dict's next(iter(d)) walks past every entry
        # deleted before it (docs/benchmarks.md, "Figures behind the code").
        self._values: OrderedDict[DeviceKey, tuple[str, str, str]] = OrderedDict()

    def get(self, app_id: str, device_id: str, field: str, text: str) -> str | None:
        device = (app_id, device_id)
        held = self._values.get(device)
        # The whole sealed text must match, not only its key id: the same key seals the
        # device's later tokens too, and a text someone altered must fail to open, not hit.
        if held is None or held[0] != field or held[1] != text:
            return None
        self._values.move_to_end(device)
        return held[2]

    def put(self, app_id: str, device_id: str, field: str, text: str, value: str) -> None:
        device = (app_id, device_id)
        if device not in self._values and len(self._values) >= self._limit:
            self._values.popitem(last=False)
        self._values[device] = (field, text, value)
        self._values.move_to_end(device)

    def drop(self, app_id: str, device_id: str) -> None:
        self._values.pop((app_id, device_id), None)

    def drop_where(self, gone: Callable[[str, str], bool]) -> None:
        self._values = OrderedDict((d, v) for d, v in self._values.items() if not gone(*d))

    def __len__(self) -> int:
        return len(self._values)
