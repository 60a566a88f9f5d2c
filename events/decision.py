"""What deciding one command yields (events and its one outcome), and the outcome's two
forms; shared by the rules of `events/decide.py` and `events/lifecycle.py`."""

from __future__ import annotations

import msgspec

from events import rules
from events.model import AnyCommand, AnyEvent, Outcome


class Decision(msgspec.Struct, frozen=True):
    events: tuple[AnyEvent, ...]
    outcome: Outcome


def reject(command: AnyCommand, now_ms: int, rejection: rules.Rejection) -> Decision:
    outcome = Outcome(
        command_id=command.command_id,
        app_id=command.app_id,
        device_id=command.device_id,
        accepted=False,
        decided_at=now_ms,
        code=rejection.code,
        message=rejection.message,
    )
    return Decision((), outcome)


def accept(
    command: AnyCommand,
    now_ms: int,
    events: tuple[AnyEvent, ...],
    registration_ids: dict[str, str] | None = None,
    note: str | None = None,
    stale: tuple[str, ...] = (),
) -> Decision:
    outcome = Outcome(
        command_id=command.command_id,
        app_id=command.app_id,
        device_id=command.device_id,
        accepted=True,
        decided_at=now_ms,
        event_ids=tuple(event.event_id for event in events),
        registration_ids=registration_ids or {},
        note=note,
        stale=stale,
    )
    return Decision(events, outcome)


def unknown_device(command: AnyCommand, detail: str = "") -> rules.Rejection:
    return rules.Rejection(
        rules.UNKNOWN_DEVICE_DELETE,
        f"Unable to cancel device registration - unknown device ID {command.device_id!r}{detail}",
    )
