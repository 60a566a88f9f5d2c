"""The command processor's part in personal data: a raw Kafka command is sealed and sent
again in its place, and a forgotten device's keys are erased (docs/design.md §12).

Why a sealed copy rather than sealing while deciding: a decision must be reproducible
byte for byte, and sealing needs the device's key, which an erasure deletes. A decision that
only ever copies sealed text from its command needs no key, so it is the same before and
after an erasure. The copy keeps the command id: its outcome is the command's outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from events import AnyCommand, AnyEvent, DeviceForgotten, Outcome, rules
from projections.positions import Record
from services.keys import personal
from services.keys.keyring import Keyring
from services.stream.batch_sender import Dead

DeviceKey = tuple[str, str]
Misdirected = Callable[[Record, AnyCommand], rules.Rejection | None]


class Sealing:
    def __init__(self, keyring: Keyring):
        self.keyring = keyring

    @staticmethod
    def needs_copy(command: AnyCommand) -> bool:
        return bool(personal.raw_fields(command))

    async def copies_of(
        self,
        parsed: Sequence[tuple[Record, AnyCommand | Dead]],
        seen: dict[DeviceKey, Outcome],
        misdirected: Misdirected,
    ) -> dict[int, AnyCommand]:
        """Of a batch's commands, those with a raw personal value that would be decided: their
        sealed copies, by id() of the command. A repeat (`seen`: outcomes by app and command
        id), a misdirected command or one the rules reject is decided as it is: it needs no
        key, and gets none."""
        raw = [
            c
            for record, c in parsed
            if not isinstance(c, Dead)
            and self.needs_copy(c)
            and (c.app_id, c.command_id) not in seen
            and misdirected(record, c) is None
            and rules.check(c, c.issued_at or record.timestamp) is None
        ]
        if not raw:
            return {}
        copies = await self.copies(raw)
        return {id(c): copy for c, copy in zip(raw, copies, strict=True)}

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
