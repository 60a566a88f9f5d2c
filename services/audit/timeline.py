"""The audit commands' human output: one line per event, a sentence each.

`devreg history` and `devreg replay` print these on a terminal; `--json`, or a pipe, keeps the
JSON / NDJSON that scripts read (services/audit/commands.py chooses). The console words events
the same way (services/http/console/static/events.js).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from events import (
    AnyEvent,
    ChannelCreated,
    DeviceForgotten,
    DeviceRegistered,
    DeviceState,
    DeviceSuperseded,
    DeviceUnregistered,
    RegistrationExpired,
    TokenRejected,
    empty_state,
    evolve,
)
from projections.chain import Checked, Verdict

HASH_SHOWN = 12  # hex digits of a hash on a line: enough to tell events apart by eye
_MARKS = {
    "applied": "ok",
    "duplicate": "repeat",
    "broken": "BROKEN",
    "unchecked": "unchecked",
    "channel": "",
}


def utc(ms: int | None) -> str:
    if ms is None:
        return "never"
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d} UTC"


def _names(channels: tuple[str, ...] | list[str]) -> str:
    return ", ".join(channels) if channels else "no channel"


def _registered(event: DeviceRegistered, before: DeviceState | None) -> str:
    expires = f", until {utc(event.expiration)}" if event.expiration else ""
    platform = f"{event.os} {event.os_version}".strip()
    if before is None or not before.channels:
        return (
            f"registered on {_names(event.channels)}{expires}"
            f" ({platform}, token {event.device_token})"
        )
    added = [c for c in event.channels if c not in before.channels]
    kept = [c for c in event.channels if c in before.channels]
    parts = []
    if added:
        parts.append(f"added to {_names(added)}{expires}")
    if kept:
        parts.append(f"renewed {_names(kept)}{expires}")
    if before.device_token and before.device_token != event.device_token:
        parts.append(f"token changed from {before.device_token} to {event.device_token}")
    if (before.os, before.os_version) != (event.os, event.os_version):
        parts.append(f"now {platform}")
    return "; ".join(parts) or "registered again, nothing changed"


def _was(channels: tuple[str, ...]) -> str:
    return f" (was on {_names(channels)})" if channels else ""


def sentence(event: AnyEvent, before: DeviceState | None = None) -> str:
    """What happened, in words; `before` is the device as it was (None: not known here)."""
    match event:
        case DeviceRegistered():
            return _registered(event, before)
        case DeviceUnregistered():
            if before is None:  # a replay line: whether these were all its channels is unknown
                return f"unregistered from {_names(event.channels)}"
            if set(before.channels) == set(event.channels):
                return f"unregistered (was on {_names(event.channels)})"
            return f"removed from {_names(event.channels)}"
        case RegistrationExpired():
            return f"expired on {_names(event.channels)} (expiration {utc(event.expiration)})"
        case ChannelCreated():
            return f"channel {event.channel} created"
        case TokenRejected():
            return (
                f"removed: {event.provider} rejected its token ({event.reason}) for a push sent"
                f" at {utc(event.sent_at)}{_was(event.channels)}"
            )
        case DeviceSuperseded():
            return f"superseded by {event.by_device_id}, which registered the same token" + _was(
                event.channels
            )
        case DeviceForgotten():
            return f"forgotten ({event.reason}): token and user fingerprint erased" + _was(
                event.channels
            )
    return str(type(event).__name__)  # a type added later, before it gets its sentence


def short(digest: str) -> str:
    return digest[:HASH_SHOWN] + "…" if digest else "-"


def verdict_text(verdict: Verdict) -> str:
    broken = verdict.broken_at
    if broken is not None:
        return (
            f"HASH CHAIN BROKEN at partition {broken.partition} offset {broken.offset}"
            f" (version {broken.version}): {broken.reason}"
        )
    repeats = f", {verdict.duplicates} re-emitted copies skipped" if verdict.duplicates else ""
    return (
        f"hash chain intact: {verdict.events} events, each hash recomputed and linked to the"
        f" one before{repeats}; last hash {verdict.last_hash or '-'}"
    )


def history_lines(
    app_id: str, device_id: str, events: list[Checked], verdict: Verdict
) -> Iterator[str]:
    """`devreg history` on a terminal: a heading, the events, and the chain's verdict."""
    yield f"{app_id} / {device_id}"
    if not events:
        yield "no events: this device was never registered in this app"
    state = empty_state(app_id, device_id)
    for checked in events:
        event = checked.event
        before = state
        if not isinstance(event, ChannelCreated) and checked.status == "applied":
            state = evolve(state, event)
        version = "" if isinstance(event, ChannelCreated) else f"v{event.version}"
        mark = _MARKS.get(checked.status, checked.status)
        hash_mark = "" if checked.hash_ok else " (hash does not match its content)"
        yield (
            f"{utc(event.occurred_at)}  {version:>4}  {sentence(event, before)}"
            f"  [{short(event.hash)}{' ' + mark if mark else ''}{hash_mark}]"
        )
    yield verdict_text(verdict)


def replay_line(partition: int, offset: int, event: AnyEvent) -> str:
    """`devreg replay` on a terminal: where, when, whose, and what."""
    subject = event.channel if isinstance(event, ChannelCreated) else event.device_id
    version = "" if isinstance(event, ChannelCreated) else f"v{event.version}"
    return (
        f"{utc(event.occurred_at)}  {partition}@{offset:<6}  {event.app_id}/{subject}"
        f"  {version:>4}  {sentence(event)}  [{short(event.hash)}]"
    )
