"""A device's history and its registration as of a time, over HTTP (beyond Backendless).
Both are answered by the worker that owns the device's partition.

Each page of history comes with a check of its part of the hash chain, by the audit's own
`check_chain` (projections/chain.py): every hash recomputed from its event's content, and
every event linked to the one before it, the page's first to the event at version `after`.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from events import AnyEvent, DeviceEvent, decode_event, empty_state, evolve, rules
from events.user_tokens import redacted_json
from projections.chain import Link, Position, check_chain
from projections.device_lookup import DeviceView
from services.http import params, wire
from services.http.access import app_of
from services.http.api import Api
from services.http.wire import WireError, json_response


class EventCheck(msgspec.Struct, frozen=True):
    # applied: its hash matches its content and it links to the one before; broken: the
    # first that does not (`chain.reason` says why); unchecked: after a break; unknown: a type
    # newer than this devreg, which it cannot check
    status: str
    hashOk: bool


class ChainCheck(msgspec.Struct, frozen=True, omit_defaults=True):
    intact: bool  # no event of this page breaks the chain
    checked: int  # events of this page checked (every one, unless a type is unknown)
    brokenAt: int | None = None  # the version of the first event that breaks it
    reason: str | None = None


class HistoryPage(msgspec.Struct, frozen=True):
    # each the event's canonical JSON as in the log (an old raw session token redacted)
    events: list[msgspec.Raw]
    nextAfter: int | None  # pass as ?after= for the next page
    checks: list[EventCheck]  # one per event, in the same order
    chain: ChainCheck


def _decoded(raw: bytes) -> AnyEvent | None:
    try:
        return decode_event(raw)
    except msgspec.DecodeError:
        return None


def _link_of(raw: bytes) -> Link:
    envelope = msgspec.json.decode(raw, type=_Envelope)
    return Link(envelope.version, envelope.hash)


class _Envelope(msgspec.Struct):
    version: int = 0
    hash: str = ""


def check_page(events: list[bytes], start: Link | None) -> tuple[list[EventCheck], ChainCheck]:
    """The checks of a page of history (see the module's docstring). Events of a type this
    devreg does not know cannot be checked: they, and any after them, say so."""
    known: list[tuple[Position, AnyEvent]] = []
    for raw in events:
        event = _decoded(raw)
        if event is None:
            break
        known.append((Position(-1, -1, event.occurred_at), event))
    checked, verdict = check_chain(known, start)
    checks = [EventCheck(c.status, c.hash_ok) for c in checked]
    checks += [EventCheck("unknown", False)] * (len(events) - len(known))
    broken = verdict.broken_at
    chain = ChainCheck(
        intact=broken is None,
        checked=len(known),
        brokenAt=broken.version if broken else None,
        reason=broken.reason if broken else None,
    )
    return checks, chain


class History:
    def __init__(self, api: Api):
        self.api = api

    async def history(self, request: web.Request) -> web.Response:
        app_id = app_of(request)
        device_id = params.DEVICE_ID.read(request)
        if forwarded := await self.api.forwarder.to_owner(request, app_id, device_id):
            return forwarded
        limit = params.LIMIT.read(request)
        after = params.AFTER.read(request)
        events = await self.api.projection.device_history(app_id, device_id, after, limit)
        if not events and after == 0:
            raise WireError(rules.UNKNOWN_DEVICE_GET, f"No history for device ID {device_id!r}")
        next_after = after + len(events) if len(events) == limit else None
        link = None
        if after:
            before = await self.api.projection.device_history(app_id, device_id, after - 1, 1)
            link = _link_of(before[0]) if before else Link(after, "")
        # Checked as stored; shown verbatim, but for the raw session token an event written
        # before fingerprints holds (its hash is of the stored bytes: the check says so)
        checks, chain = check_page(events, link)
        # and with their sealed values opened (docs/design.md §12: erased ones say so)
        shown = [msgspec.Raw(redacted_json(await self.api.opened_event(e))) for e in events]
        page = HistoryPage(shown, next_after, checks, chain)
        return json_response(page)

    async def as_of(self, request: web.Request) -> web.Response:
        """The registration as GET would have answered it at that instant."""
        app_id = app_of(request)
        device_id = params.DEVICE_ID.read(request)
        if forwarded := await self.api.forwarder.to_owner(request, app_id, device_id):
            return forwarded
        instant = params.INSTANT.read(request)
        state = empty_state(app_id, device_id)
        for raw in await self.api.projection.device_history_until(app_id, device_id, instant):
            event = decode_event(raw)
            if isinstance(event, DeviceEvent):  # only device events are kept per device
                state = evolve(state, event)
        active = state.active_channels(instant)
        if not active:
            message = f"Device ID {device_id!r} had no registration at {instant}"
            raise WireError(rules.UNKNOWN_DEVICE_GET, message)
        view = DeviceView(
            app_id=app_id,
            device_id=device_id,
            device_token=await self.api.opened_token(app_id, device_id, state.device_token),
            os=state.os,
            os_version=state.os_version,
            version=state.version,
            channels={c: (s.registration_id, s.expiration) for c, s in sorted(active.items())},
        )
        return json_response(wire.device_body(view))
