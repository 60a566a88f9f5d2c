"""A device's history and its registration as of a time, over HTTP (beyond Backendless,
same auth). Both are answered by the worker that owns the device's partition."""

from __future__ import annotations

import msgspec
from aiohttp import web

from events import DeviceEvent, decode_event, empty_state, evolve, rules
from events.user_tokens import redacted_json
from projections.device_lookup import DeviceView
from services.http import params, wire
from services.http.access import app_of
from services.http.api import Api
from services.http.wire import WireError, json_response


class HistoryPage(msgspec.Struct, frozen=True):
    # each the event's canonical JSON as in the log (an old raw session token redacted)
    events: list[msgspec.Raw]
    nextAfter: int | None  # pass as ?after= for the next page


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
        # Verbatim, but for the raw session token an event written before fingerprints holds
        page = HistoryPage(
            events=[msgspec.Raw(redacted_json(e)) for e in events], nextAfter=next_after
        )
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
            device_token=state.device_token,
            os=state.os,
            os_version=state.os_version,
            version=state.version,
            channels={c: (s.registration_id, s.expiration) for c, s in sorted(active.items())},
        )
        return json_response(wire.device_body(view))
