"""Targeting queries over HTTP (beyond Backendless, same auth): channels with counts, the
devices on a channel (keyset-paged, `os` filter), and a streaming NDJSON export."""

from __future__ import annotations

import base64
import binascii

import msgspec
from aiohttp import web

from events import rules
from services.gateway import now_ms
from services.http_api import Api
from services.wire import WireError, json_response

MAX_PAGE = 1000
DEFAULT_PAGE = 100
_EXPORT_CHUNK = 1000
_line_encoder = msgspec.json.Encoder()


def encode_cursor(device_id: str) -> str:
    return base64.urlsafe_b64encode(device_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str:
    if not cursor:
        return ""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise WireError(rules.INVALID_REQUEST, f"Invalid cursor {cursor!r}") from None


def page_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise WireError(rules.INVALID_REQUEST, f"limit must be an integer in [1, {MAX_PAGE}]")
    return int(raw)


def os_filter(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = raw.upper()
    if value not in rules.OS_VALUES:
        allowed = ", ".join(sorted(rules.OS_VALUES))
        raise WireError(rules.INVALID_REQUEST, f"os must be one of {allowed}, got {raw!r}")
    return value


class Targeting:
    def __init__(self, api: Api, events_topic: str):
        self.api = api
        self.events_topic = events_topic

    def freshness(self) -> dict[str, object]:
        """What the answer reflects: the applied position of each events partition."""
        applied = {
            str(partition): offset
            for (topic, partition), offset in sorted(self.api.projection.next_offsets().items())
            if topic == self.events_topic
        }
        return {"appliedOffsets": applied, "at": now_ms()}

    async def channels(self, request: web.Request) -> web.Response:
        app_id = self.api.authorize(request)
        counts = await self.api.projection.channel_counts(app_id, now_ms())
        return json_response({"channels": counts, "freshness": self.freshness()})

    async def devices(self, request: web.Request) -> web.Response:
        app_id = self.api.authorize(request)
        limit = page_limit(request.query.get("limit"))
        after = decode_cursor(request.query.get("cursor"))
        os_name = os_filter(request.query.get("os"))
        channel = request.match_info["channel"]
        page = await self.api.projection.channel_devices(
            app_id, channel, now_ms(), after, limit, os_name
        )
        cursor = encode_cursor(page[-1].deviceId) if len(page) == limit else None
        body = {"devices": page, "nextCursor": cursor, "freshness": self.freshness()}
        return json_response(body)

    async def export(self, request: web.Request) -> web.StreamResponse:
        """Every device on the channel as NDJSON, read page by page, never all in memory."""
        app_id = self.api.authorize(request)
        os_name = os_filter(request.query.get("os"))
        channel = request.match_info["channel"]
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        response.headers["X-Devreg-Freshness"] = msgspec.json.encode(self.freshness()).decode()
        await response.prepare(request)
        after, at = "", now_ms()
        while True:
            page = await self.api.projection.channel_devices(
                app_id, channel, at, after, _EXPORT_CHUNK, os_name
            )
            if page:
                await response.write(b"".join(_line_encoder.encode(d) + b"\n" for d in page))
            if len(page) < _EXPORT_CHUNK:
                break
            after = page[-1].deviceId
        await response.write_eof()
        return response
