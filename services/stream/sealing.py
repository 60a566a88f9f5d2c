"""The command processor's part in personal data: a raw Kafka command is sealed and sent
again in its place, and a forgotten device's keys are erased (docs/design.md §12).

Why a sealed copy rather than sealing while deciding: a decision must be reproducible
byte for byte, and sealing needs the device's key, which an erasure deletes. A decision that
only ever copies sealed text from its command needs no key, so it is the same before and
after an erasure. The copy keeps the command id: its outcome is the command's outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from events import AnyCommand, AnyEvent, DeviceForgotten
from services.keys import personal
from services.keys.keyring import Keyring

DeviceKey = tuple[str, str]


class Sealing:
    def __init__(self, keyring: Keyring):
        self.keyring = keyring

    @staticmethod
    def needs_copy(command: AnyCommand) -> bool:
        return bool(personal.raw_fields(command))

    async def copies(self, commands: Sequence[AnyCommand]) -> list[AnyCommand]:
        """Each command with its personal fields sealed (keys created in one group)."""
        devices = sorted({(c.app_id, c.device_id) for c in commands})
        keys = dict(zip(devices, await self.keyring.ensure_all(devices), strict=True))
        return [
            personal.seal_command(self.keyring, c, keys[(c.app_id, c.device_id)]) for c in commands
        ]

    async def erase_forgotten(self, events: Iterable[AnyEvent]) -> None:
        """After the DeviceForgotten events are acknowledged, before the batch commits: a
        crash in between decides the forget again (the same event) and erases again."""
        forgotten = {(e.app_id, e.device_id) for e in events if isinstance(e, DeviceForgotten)}
        if forgotten:
            await self.keyring.erase(forgotten)
