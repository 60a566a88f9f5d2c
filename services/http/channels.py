"""Targeting queries over HTTP (beyond Backendless): channels with counts, the devices on a
channel (keyset-paged, `os` filter), a streaming NDJSON export, and a channel's subscriptions
over time (projections/channel_series.py)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import socket

import msgspec
from aiohttp import web
from yarl import URL

from projections.channel_series import instants
from projections.queries import ChannelCount, ChannelDevice
from services.clock import now_ms
from services.http import params
from services.http.access import app_of
from services.http.api import Api
from services.http.params import encode_cursor
from services.http.wire import Freshness, json_response

DEFAULT_SPAN_MS = 24 * 3600 * 1000  # a series without `since`: the last day
_EXPORT_CHUNK = 1000
SEND_BUFFER = 64 * 1024  # bytes the kernel may hold for one streaming client
log = logging.getLogger(__name__)
_line_encoder = msgspec.json.Encoder()


class Targeting:
    def __init__(self, api: Api, events_topic: str):
        self.api = api
        self.events_topic = events_topic

    def freshness(self) -> Freshness:
        """What the answer reflects: the applied position of each events partition served."""
        local = self.api.forwarder.ownership.local()
        applied = {
            str(partition): offset
            for (topic, partition), offset in sorted(self.api.projection.next_offsets().items())
            if topic == self.events_topic and (local is None or partition in local)
        }
        return Freshness(appliedOffsets=applied, at=now_ms())

    async def channels(self, request: web.Request) -> web.Response:
        app_id = app_of(request)
        local = self.api.forwarder.ownership.local()
        counts = await self.api.projection.channel_counts(app_id, now_ms(), local)
        answer = ChannelsAnswer(channels=counts, freshness=self.freshness())
        if self.api.forwarder.fan_out(request):
            peers = [
                _channels_decoder.decode(b) for b in await self.api.forwarder.ask_peers(request)
            ]
            answer = _merge_channels([answer, *peers])
        return json_response(answer)

    async def _page(
        self, request: web.Request, app_id: str, after: str, limit: int, os_name: str | None
    ) -> DevicesAnswer:
        """A page from this worker's partitions, merged with every peer's when fanning out."""
        channel = params.CHANNEL.read(request)
        local = self.api.forwarder.ownership.local()
        page = await self.api.projection.channel_devices(
            app_id, channel, now_ms(), after, limit, os_name, local
        )
        tokens = await self.api.opened_tokens(app_id, [(d.deviceId, d.deviceToken) for d in page])
        page = [
            msgspec.structs.replace(d, deviceToken=token)
            for d, token in zip(page, tokens, strict=True)
        ]
        answer = DevicesAnswer(devices=page, nextCursor=None, freshness=self.freshness())
        if self.api.forwarder.fan_out(request):
            query = {"limit": str(limit), "cursor": encode_cursor(after) if after else ""}
            if os_name:
                query["os"] = os_name
            # The page route, from the path as the client encoded it: the decoded one would
            # read a '?', '#' or '%41' in a channel name as URL syntax.
            path = request.raw_path.split("?", 1)[0].removesuffix(".ndjson")
            route = URL(path, encoded=True).with_query({k: v for k, v in query.items() if v})
            peers = await self.api.forwarder.ask_peers(request, route)
            answer = _merge_pages([answer, *(_devices_decoder.decode(b) for b in peers)], limit)
        devices = answer.devices
        cursor = encode_cursor(devices[-1].deviceId) if len(devices) == limit else None
        return msgspec.structs.replace(answer, nextCursor=cursor)

    async def devices(self, request: web.Request) -> web.Response:
        app_id = app_of(request)
        limit = params.LIMIT.read(request)
        after = params.CURSOR.read(request)
        os_name = params.OS.read(request)
        return json_response(await self._page(request, app_id, after, limit, os_name))

    async def series(self, request: web.Request) -> web.Response:
        """Devices on the channel at evenly spaced instants from `since` to `until`."""
        app_id = app_of(request)
        channel = params.CHANNEL.read(request)
        until = params.UNTIL.read(request)
        until = now_ms() if until is None else until
        since = params.SINCE.read(request)
        since = until - DEFAULT_SPAN_MS if since is None else since
        points = params.POINTS.read(request)
        if not since < until:
            raise params.invalid("since", "must be before until")
        moments = instants(since, until, points)
        local = self.api.forwarder.ownership.local()
        counts = await self.api.projection.channel_series(app_id, channel, moments, local)
        answer = SeriesAnswer(channel, since, until, moments, counts, self.freshness())
        if self.api.forwarder.fan_out(request):
            # Every worker gets the same instants: the window is fixed here, not by each peer.
            fixed = {"since": str(since), "until": str(until), "points": str(points)}
            # From the path as the client encoded it (a '?' or '%41' in a channel name)
            path = request.raw_path.split("?", 1)[0]
            route = URL(path, encoded=True).with_query(fixed)
            peers = await self.api.forwarder.ask_peers(request, route)
            answer = _merge_series([answer, *(_series_decoder.decode(b) for b in peers)])
        return json_response(answer)

    async def export(self, request: web.Request) -> web.StreamResponse:
        """Every device on the channel as NDJSON, read page by page, never all in memory."""
        app_id = app_of(request)
        os_name = params.OS.read(request)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        response.headers["X-Devreg-Freshness"] = msgspec.json.encode(self.freshness()).decode()
        bound_send_buffer(request)
        await response.prepare(request)
        after = ""
        while True:
            page = (await self._page(request, app_id, after, _EXPORT_CHUNK, os_name)).devices
            if page:
                chunk = b"".join(_line_encoder.encode(d) + b"\n" for d in page)
                try:
                    await asyncio.wait_for(response.write(chunk), self.api.write_timeout_s)
                except TimeoutError:
                    # The client stopped reading: cut the answer off rather than hold the
                    # connection, the handler and a cursor into the projection for ever.
                    log.info("export cut off: the client stopped reading (%s)", request.remote)
                    self.api.metrics.inc("devreg_http_exports_cut_total")
                    if request.transport is not None:
                        request.transport.abort()
                    return response
            if len(page) < _EXPORT_CHUNK:
                break
            after = page[-1].deviceId
        await response.write_eof()
        return response


class ChannelsAnswer(msgspec.Struct, frozen=True):
    channels: list[ChannelCount]
    freshness: Freshness


class DevicesAnswer(msgspec.Struct, frozen=True):
    devices: list[ChannelDevice]
    nextCursor: str | None
    freshness: Freshness


class SeriesAnswer(msgspec.Struct, frozen=True):
    channel: str
    since: int
    until: int
    at: list[int]  # the instants, evenly spaced from `since` to `until`, both included
    devices: list[int]  # on the channel at each of them
    freshness: Freshness


_channels_decoder = msgspec.json.Decoder(ChannelsAnswer)
_series_decoder = msgspec.json.Decoder(SeriesAnswer)
_devices_decoder = msgspec.json.Decoder(DevicesAnswer)


def _merge_freshness(parts: list[Freshness]) -> Freshness:
    applied: dict[str, int] = {}
    for part in parts:
        applied.update(part.appliedOffsets)
    return Freshness(appliedOffsets=dict(sorted(applied.items())), at=min(p.at for p in parts))


def _merge_channels(answers: list[ChannelsAnswer]) -> ChannelsAnswer:
    """Each worker counts its own partitions' devices: the channel's count is the sum."""
    merged: dict[str, ChannelCount] = {}
    for answer in answers:
        for c in answer.channels:
            seen = merged.get(c.channel)
            merged[c.channel] = (
                c
                if seen is None
                else ChannelCount(
                    c.channel, seen.devices + c.devices, min(seen.createdAt, c.createdAt)
                )
            )
    channels = [merged[name] for name in sorted(merged)]
    return ChannelsAnswer(channels, _merge_freshness([a.freshness for a in answers]))


def _merge_series(answers: list[SeriesAnswer]) -> SeriesAnswer:
    """Each worker counts its own partitions' devices at the same instants: the sum."""
    first = answers[0]
    devices = [sum(column) for column in zip(*(a.devices for a in answers), strict=True)]
    freshness = _merge_freshness([a.freshness for a in answers])
    return SeriesAnswer(first.channel, first.since, first.until, first.at, devices, freshness)


def _merge_pages(answers: list[DevicesAnswer], limit: int) -> DevicesAnswer:
    """Each worker's page is the first `limit` of its own partitions after the cursor, so the
    first `limit` of their union, in device id order, is the first `limit` of all."""
    devices = heapq.merge(*(a.devices for a in answers), key=lambda d: d.deviceId)
    page = list(itertools.islice(devices, limit))
    return DevicesAnswer(page, None, _merge_freshness([a.freshness for a in answers]))


def bound_send_buffer(request: web.Request) -> None:
    """A long stream (an export, a live tail) must not park megabytes in the kernel for a
    client that reads slowly: with a fixed send buffer (no autotuning up to tcp_wmem's 4 MB)
    the write timeout also trips after a bounded amount of unread data."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
