"""`GET /admin/{app}/live`: the app's events as they happen, as server-sent events.

Messages: `event: ready` once every partition is watched (what happens from then on is
shown), then one unnamed message per event (`data: {"partition", "offset", "timestamp",
"event"}`), comments as keep-alives, and `event: end` with the reason when the stream ends
(the viewer fell behind, a worker stops). Filters: `?channel=`, `?device=`.

The worker asked follows its own partitions (services/stream/live_tail.py) and, when there
are others, follows each of them (a sub-stream answered from their own partitions), so one
stream covers them all. A browser's EventSource cannot send the admin key's header: the
console reads the stream with fetch().
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp
import msgspec
from aiohttp import web

from events import rules, sealed
from services.http import params
from services.http.access import app_of
from services.http.api import Api
from services.http.channels import bound_send_buffer
from services.http.forwarding import LOCAL, at_peer, raw_path_qs
from services.http.wire import WireError
from services.stream.live_tail import LiveLine, TailFilter, TooManyViewers, Viewer

log = logging.getLogger(__name__)
KEEPALIVE_S = 15.0  # a comment this often: proxies keep the stream, a gone client is noticed
GONE_CHECK_S = 1.0  # how soon a viewer that went away frees its place
PEER_READY_S = 10.0  # how long the other workers get to start watching
_PEER_LINE_BYTES = 1 << 20  # an event's line can be long (100 channels of 500 characters)
_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


SEALED = sealed.PREFIX.encode()
_line = msgspec.json.Decoder(LiveLine)


def _message(data: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + msgspec.json.encode(data) + b"\n\n"


class Live:
    def __init__(self, api: Api):
        self.api = api

    async def close_streams(self, app: web.Application) -> None:
        """aiohttp's on_shutdown: streams end before the server waits for its handlers."""
        self.api.live_tail.end_all("the worker is stopping")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        app_id = app_of(request)
        where = TailFilter(
            app_id, params.LIVE_DEVICE.read(request), params.LIVE_CHANNEL.read(request)
        )
        try:
            viewer = await self.api.live_tail.watch(where)
        except TooManyViewers as exc:
            raise WireError(rules.TOO_MANY_VIEWERS, f"{exc}; try again later", 503) from None
        followers: list[asyncio.Task[None]] = []
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # a proxy must not hold events back
            }
        )
        try:
            bound_send_buffer(request)
            await response.prepare(request)
            if self.api.forwarder.fan_out(request):
                peers = self.api.forwarder.ownership.peers()
                ready = [asyncio.Event() for _ in peers]
                followers = [
                    asyncio.ensure_future(self._follow(request, peer, viewer, started.set))
                    for peer, started in zip(peers, ready, strict=True)
                ]
                await self._peers_ready(ready, viewer)
            if viewer.ended is None:
                await self._send(
                    request, response, _message({"workers": 1 + len(followers)}, "ready")
                )
            await self._relay(request, response, viewer)
        except (ConnectionResetError, TimeoutError) as exc:
            # The viewer went away or stopped reading: nobody to tell.
            self.api.metrics.inc("devreg_http_live_cut_total")
            log.info("live stream cut off (%s): %r", request.remote, exc)
            if request.transport is not None:
                request.transport.abort()
        finally:
            self.api.live_tail.leave(viewer)
            for follower in followers:
                follower.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
        return response

    async def _peers_ready(self, ready: list[asyncio.Event], viewer: Viewer) -> None:
        if not ready:
            return
        waits = [asyncio.ensure_future(r.wait()) for r in ready]
        _, pending = await asyncio.wait(waits, timeout=PEER_READY_S)
        for wait in pending:
            wait.cancel()
        if pending and viewer.ended is None:
            viewer.end("another worker did not start watching in time; try again")

    async def _relay(
        self, request: web.Request, response: web.StreamResponse, viewer: Viewer
    ) -> None:
        quiet = 0.0
        while viewer.ended is None:
            try:
                line = await asyncio.wait_for(viewer.queue.get(), GONE_CHECK_S)
            except TimeoutError:
                line = None
            if viewer.ended is not None:
                break
            if request.transport is None or request.transport.is_closing():
                return  # the viewer went away: aiohttp does not cancel the handler for it
            quiet = 0.0 if line is not None else quiet + GONE_CHECK_S
            if line is not None:
                line = await self._opened(line)
                await self._send(request, response, b"data: " + line + b"\n\n")
            elif quiet >= KEEPALIVE_S:
                quiet = 0.0
                await self._send(request, response, b": keep-alive\n\n")
        await self._send(request, response, _message({"reason": viewer.ended}, "end"))
        await response.write_eof()

    async def _opened(self, line: bytes) -> bytes:
        """A line with its event's sealed values opened (by this worker, the owner of the
        tail's partitions; a peer's lines come opened by the peer)."""
        if SEALED not in line:
            return line
        live = _line.decode(line)
        event = await self.api.opened_event(bytes(live.event))
        return msgspec.json.encode(msgspec.structs.replace(live, event=msgspec.Raw(event)))

    async def _send(self, request: web.Request, response: web.StreamResponse, chunk: bytes) -> None:
        # A client that stops reading makes the write wait: the stream is cut after the
        # write timeout (the kernel's buffer for it is bounded, see bound_send_buffer).
        await asyncio.wait_for(response.write(chunk), self.api.write_timeout_s)

    async def _follow(
        self, request: web.Request, peer: str, viewer: Viewer, started: Callable[[], None]
    ) -> None:
        """Relay another worker's sub-stream (its own partitions) into `viewer`."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers[LOCAL] = self.api.forwarder.ownership.url
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=KEEPALIVE_S * 3)
        reason = f"the worker at {peer} stopped streaming; reconnect to go on"
        try:
            async with self.api.forwarder.session().get(
                at_peer(peer, raw_path_qs(request)),
                headers=headers,
                timeout=timeout,
                read_bufsize=_PEER_LINE_BYTES,
            ) as answer:
                if answer.status != 200:
                    reason = f"the worker at {peer} answered {answer.status}"
                    return
                kind = None
                async for raw in answer.content:
                    line = raw.rstrip(b"\n")
                    if line.startswith(b"event: "):
                        kind = line[7:]
                    elif line.startswith(b"data: ") and kind == b"ready":
                        started()
                    elif line.startswith(b"data: ") and kind == b"end":
                        ended = msgspec.json.decode(line[6:], type=dict[str, str | None])
                        reason = f"the worker at {peer}: {ended.get('reason')}"
                        return
                    elif line.startswith(b"data: "):
                        if viewer.offer(line[6:]):
                            self.api.metrics.inc("devreg_http_live_cut_total")
                    elif not line:
                        kind = None
        except (aiohttp.ClientError, TimeoutError, ValueError, msgspec.DecodeError) as exc:
            log.info("live sub-stream from %s ended: %r", peer, exc)
        finally:
            viewer.end(reason)
