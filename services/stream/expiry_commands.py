"""The scheduler's expiry commands, made from the projection's due rows
(services/stream/scheduler.py sends them; docs/design.md §4, §7)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from events import DueExpiry, ExpireRegistration, ExpireRegistrations, encode, rules
from projections.store import DueExpiration

COMMAND_DEVICES = rules.MAX_EXPIRY_DEVICES  # devices per ExpireRegistrations


def expiry_command(due: DueExpiration, issued_at: int) -> ExpireRegistration:
    """One device's expiry, as the scheduler sent it before `expire-registrations/1` (the
    processor still decides it: a log may hold it)."""
    return ExpireRegistration(
        # The idempotency key is per app: the device must be part of it.
        command_id=f"expire/{due.expiration}/v{due.version}/{due.device_id}",
        app_id=due.app_id,
        device_id=due.device_id,
        issued_at=issued_at,
        expiration=due.expiration,
    )


def expiry_commands(
    due: Iterable[DueExpiration],
    issued_at: int | None,
    partition_of: Callable[[str, str], int],
) -> list[ExpireRegistrations]:
    """The due rows as commands of many devices, one per commands partition and app (more when
    over COMMAND_DEVICES), in the rows' order. A device with several due channels has a row per
    channel: it is named once (its earliest). The id is a digest of what the command carries,
    so sending the same rows again is a repeat, answered by the first outcome.

    `issued_at` None: rows not due yet, to be decided ahead (prepared_expiries.py): one
    command per expiration as well, issued at that expiration, the instant it is decided at."""
    groups: dict[tuple[int, str, int | None], dict[str, DueExpiry]] = {}
    for row in due:
        partition = row.partition
        if partition is None:
            partition = partition_of(row.app_id, row.device_id)
        instant = row.expiration if issued_at is None else None
        devices = groups.setdefault((partition, row.app_id, instant), {})
        if row.device_id not in devices:
            devices[row.device_id] = DueExpiry(
                device_id=row.device_id, expiration=row.expiration, version=row.version
            )
    commands = []
    for (partition, app_id, instant), devices in groups.items():
        entries = list(devices.values())
        for start in range(0, len(entries), COMMAND_DEVICES):
            chunk = tuple(entries[start : start + COMMAND_DEVICES])
            digest = hashlib.sha256(
                encode(ExpireRegistrations(command_id="", app_id=app_id, devices=chunk))
            ).hexdigest()[:32]
            commands.append(
                ExpireRegistrations(
                    # The idempotency key is per app; the partition and the first expiration
                    # are there for a reader of the topic.
                    command_id=f"expire/p{partition}/{chunk[0].expiration}/{digest}",
                    app_id=app_id,
                    issued_at=issued_at if instant is None else instant,
                    devices=chunk,
                )
            )
    return commands
