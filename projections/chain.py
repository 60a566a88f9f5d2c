"""Checking one device's hash chain, event by event, as an auditor would.

Pure: it takes the device's events in log order. Links and gapless versions are checked by the
projection's own fold (a ProjectionError there is the break); on top of it, each event's hash
is recomputed from its content, and a re-emitted duplicate must be the very event it repeats.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from events import AnyEvent, ChannelCreated
from events.identity import event_hash
from projections.fold import Changes, DeviceRow, ProjectionError, fold


class Position(msgspec.Struct, frozen=True):
    partition: int
    offset: int
    timestamp: int


class Checked(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the history with what the check found."""

    partition: int
    offset: int
    timestamp: int
    status: str  # applied | duplicate | broken | unchecked (after the break) | channel
    hash_ok: bool
    event: AnyEvent


class Break(msgspec.Struct, frozen=True, kw_only=True):
    partition: int
    offset: int
    event_id: str
    version: int
    reason: str


class Verdict(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    intact: bool
    events: int  # device events in the chain (duplicates not counted)
    version: int
    last_hash: str
    duplicates: int = 0
    broken_at: Break | None = None


class Link(msgspec.Struct, frozen=True):
    """Where a part of a chain starts: the version and hash of the event just before it."""

    version: int
    hash: str


def check_chain(
    history: Iterable[tuple[Position, AnyEvent]], start: Link | None = None
) -> tuple[list[Checked], Verdict]:
    """Each event with its status, and the verdict: intact, or the first event that breaks.
    `start`: the history is a part of the chain that continues from that link (a page)."""
    changes = Changes({})
    originals: dict[int, tuple[str, Position]] = {}  # version -> (hash, where)
    checked: list[Checked] = []
    broken: Break | None = None
    duplicates = 0
    for at, event in history:
        hash_ok = event_hash(event) == event.hash
        if isinstance(event, ChannelCreated):
            checked.append(_entry(at, event, "channel", hash_ok))
            continue
        if broken is not None:
            checked.append(_entry(at, event, "unchecked", hash_ok))
            continue
        reason = None if hash_ok else "its hash does not match its content"
        key = (event.app_id, event.device_id)
        if start is not None and not changes.known:
            changes.known[key] = _link_row(key, start)
        current = changes.device(key)
        status = "applied"
        if reason is None and current is not None and event.version <= current.version:
            status = "duplicate"
            original_hash, where = originals.get(event.version, ("", at))
            if original_hash != event.hash:
                reason = (
                    f"a second, different version {event.version}"
                    f" (the first is at {where.partition}@{where.offset})"
                )
        elif reason is None:
            try:
                fold(changes, event)
                originals[event.version] = (event.hash, at)
            except ProjectionError as exc:
                reason = str(exc)
        if reason is not None:
            broken = Break(
                partition=at.partition,
                offset=at.offset,
                event_id=event.event_id,
                version=event.version,
                reason=reason,
            )
            status = "broken"
        duplicates += status == "duplicate"
        checked.append(_entry(at, event, status, hash_ok))
    device = next(iter(changes.devices.values()), None)
    verdict = Verdict(
        intact=broken is None,
        events=len(originals),
        version=device.version if device else 0,
        last_hash=device.last_hash if device else "",
        duplicates=duplicates,
        broken_at=broken,
    )
    return checked, verdict


def _link_row(key: tuple[str, str], link: Link) -> DeviceRow:
    """A stand-in row at the link: the fold checks a continuation by version and hash only;
    the rows it builds from here are thrown away."""
    app_id, device_id = key
    return DeviceRow(
        app_id=app_id,
        device_id=device_id,
        device_token="",
        os="",
        os_version="",
        version=link.version,
        last_hash=link.hash,
        registered_at=0,
        updated_at=0,
    )


def _entry(at: Position, event: AnyEvent, status: str, hash_ok: bool) -> Checked:
    return Checked(
        partition=at.partition,
        offset=at.offset,
        timestamp=at.timestamp,
        status=status,
        hash_ok=hash_ok,
        event=event,
    )
