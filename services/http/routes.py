"""Every HTTP route of devreg, declared once: method, path, who may call it, its parameters,
its body and its answers. The aiohttp routes (services/http/app.py) and the OpenAPI document
(services/http/openapi.py) are both generated from this table, so they cannot disagree.

Adding a route is adding one entry: a REST or admin route is served on every base its access
allows (services/http/access.py), behind the key check, with its declared parameters parsed
(services/http/params.py) before the handler runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.http import params as p
from services.http.access import Access, Handler
from services.http.api import Api
from services.http.channels import ChannelsAnswer, DevicesAnswer, SeriesAnswer, Targeting
from services.http.console.serve import Console
from services.http.device_history import History, HistoryPage
from services.http.live import Live
from services.http.token_admin import Decided, Holder, LookupBody, RejectedBody, TokenAdmin
from services.http.wire import RegisterBody, RegisterResponse, Registration, UnregisterResponse


@dataclass(frozen=True)
class Handlers:
    """The objects whose methods answer requests; a route names its handler through them."""

    api: Api
    targeting: Targeting
    history: History
    openapi: Handler
    live: Live
    console: Console
    tokens: TokenAdmin


@dataclass(frozen=True)
class Answer:
    """A success answer: a msgspec type (or a JSON schema), described."""

    description: str
    schema: Any = None  # a type msgspec can describe, a JSON schema dict, or None
    media: str = "application/json"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # under the base (for PUBLIC routes: the whole path)
    access: Access
    handler: Callable[[Handlers], Handler]
    summary: str
    ok: Answer
    params: tuple[p.Param[Any], ...] = ()
    body: type | None = None
    errors: tuple[int, ...] = ()  # statuses beyond 400 and the key checks' 401/403
    console: bool = False  # a REST route an operator's console reads: on /admin/{app_id} too


_REGISTRATION = Answer("One registration", list[Registration])
_NOTHING = Answer("Nothing to configure", {"type": "object"})
# Kafka unavailable, not visible in time, the partition moving, or too many writes waiting
_UNAVAILABLE = 503
# One server-sent event of the live tail: `data` is JSON, {"workers": n} for `ready`,
# {"reason": "..."} for `end`, and {"partition", "offset", "timestamp", "event"} otherwise.
_SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["ready", "end"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
    "required": ["data"],
}

ROUTES: tuple[Route, ...] = (
    # --- Backendless (the REST key) ---------------------------------------------------------
    Route(
        "POST",
        "/messaging/registrations",
        Access.REST,
        lambda h: h.api.register,
        "Register a device (Backendless)",
        Answer("Registered and visible", RegisterResponse),
        body=RegisterBody,
        errors=(408, 413, _UNAVAILABLE),
    ),
    Route(
        "GET",
        "/messaging/registrations/{device_id}",
        Access.REST,
        lambda h: h.api.retrieve,
        "A device's registration (Backendless)",
        _REGISTRATION,
        params=(p.DEVICE_ID,),
        errors=(_UNAVAILABLE,),
        console=True,
    ),
    Route(
        "DELETE",
        "/messaging/registrations/{device_id}",
        Access.REST,
        lambda h: h.api.unregister,
        "Cancel a registration, or only some channels (Backendless)",
        Answer("Unregistered", UnregisterResponse),
        params=(p.DEVICE_ID, p.CHANNELS),
        errors=(_UNAVAILABLE,),
    ),
    Route("GET", "/info", Access.REST, lambda h: h.api.empty, "SDK start-up", _NOTHING),
    Route(
        "GET",
        "/messaging/pushtemplates",
        Access.REST,
        lambda h: h.api.empty,
        "Push templates (none)",
        _NOTHING,
    ),
    Route(
        "GET",
        "/messaging/pushtemplates/{kind}",
        Access.REST,
        lambda h: h.api.empty,
        "Push templates of a kind (none)",
        _NOTHING,
        params=(p.KIND,),
    ),
    # --- beyond Backendless (the admin key) -------------------------------------------------
    Route(
        "GET",
        "/messaging/registrations/{device_id}/history",
        Access.ADMIN,
        lambda h: h.history.history,
        "The device's events, oldest first, paged by version",
        Answer("A page of events", HistoryPage),
        params=(p.DEVICE_ID, p.AFTER, p.LIMIT),
        errors=(_UNAVAILABLE,),
    ),
    Route(
        "GET",
        "/messaging/registrations/{device_id}/as-of/{instant}",
        Access.ADMIN,
        lambda h: h.history.as_of,
        "The registration as it was at an instant (ms or ISO-8601)",
        Answer("The registration then", list[Registration]),
        params=(p.DEVICE_ID, p.INSTANT),
        errors=(_UNAVAILABLE,),
    ),
    Route(
        "GET",
        "/messaging/channels",
        Access.ADMIN,
        lambda h: h.targeting.channels,
        "The app's channels with their active device counts",
        Answer("Channels", ChannelsAnswer),
        errors=(_UNAVAILABLE,),
    ),
    Route(
        "GET",
        "/messaging/channels/{channel}/devices",
        Access.ADMIN,
        lambda h: h.targeting.devices,
        "Devices on a channel, keyset-paged in device id order",
        Answer("A page", DevicesAnswer),
        params=(p.CHANNEL, p.LIMIT, p.CURSOR, p.OS),
        errors=(_UNAVAILABLE,),
    ),
    Route(
        "GET",
        "/messaging/channels/{channel}/devices.ndjson",
        Access.ADMIN,
        lambda h: h.targeting.export,
        "Every device on a channel, streamed as NDJSON",
        Answer(
            "One ChannelDevice JSON object per line", {"type": "string"}, "application/x-ndjson"
        ),
        params=(p.CHANNEL, p.OS),
        errors=(_UNAVAILABLE,),
    ),
    Route(
        "GET",
        "/messaging/channels/{channel}/subscriptions",
        Access.ADMIN,
        lambda h: h.targeting.series,
        "Devices on a channel at evenly spaced instants, folded from its devices' histories",
        Answer("The channel's devices at each instant", SeriesAnswer),
        params=(p.CHANNEL, p.SINCE, p.UNTIL, p.POINTS),
        errors=(_UNAVAILABLE,),
    ),
    Route(
        "GET",
        "/live",
        Access.ADMIN,
        lambda h: h.live.stream,
        "The app's events as they happen (server-sent events)",
        Answer(
            "`event: ready`, then a message per event ({partition, offset, timestamp, event}),"
            " then `event: end` with a reason",
            _SSE_EVENT,
            "text/event-stream",
        ),
        params=(p.LIVE_CHANNEL, p.LIVE_DEVICE),
        errors=(_UNAVAILABLE,),  # 5903: the worker serves its most live streams
    ),
    # --- the web console (no key: its files hold no data; its calls carry the admin key) ---
    Route(
        "GET",
        "/console",
        Access.PUBLIC,
        lambda h: h.console.page,
        "The web console",
        Answer("The console's page", {"type": "string"}, "text/html"),
    ),
    Route(
        "GET",
        "/console/{name}",
        Access.PUBLIC,
        lambda h: h.console.asset,
        "The console's scripts, styles and images",
        Answer("The file", {"type": "string"}, "*/*"),
        params=(p.CONSOLE_FILE,),
        errors=(404,),
    ),
    # --- the token lifecycle (the admin key; docs/design.md §12) ------------------------------
    Route(
        "POST",
        "/tokens/lookup",
        Access.ADMIN,
        lambda h: h.tokens.lookup,
        "Which device holds a push token (the token index)",
        Answer("The device that holds it", Holder),
        body=LookupBody,
        errors=(_UNAVAILABLE,),
    ),
    Route(
        "POST",
        "/tokens/rejected",
        Access.ADMIN,
        lambda h: h.tokens.rejected,
        "A push provider rejected a token: remove its device, unless the report is stale",
        Answer("Removed, or why not", Decided),
        body=RejectedBody,
        errors=(_UNAVAILABLE,),
    ),
    Route(
        "POST",
        "/devices/{device_id}/forget",
        Access.ADMIN,
        lambda h: h.tokens.forget,
        "Erase a device's personal data (its keys: crypto-shredding)",
        Answer("Forgotten", Decided),
        params=(p.DEVICE_ID,),
        errors=(_UNAVAILABLE,),
    ),
    # --- operations (no key) ----------------------------------------------------------------
    Route("GET", "/healthz", Access.PUBLIC, lambda h: h.api.healthz, "Liveness", Answer("Up")),
    Route(
        "GET",
        "/readyz",
        Access.PUBLIC,
        lambda h: h.api.readyz,
        "Readiness: serving, Kafka reachable, caught up",
        Answer("Ready"),
        errors=(503,),
    ),
    Route(
        "GET",
        "/metrics",
        Access.PUBLIC,
        lambda h: h.api.metrics_text,
        "Prometheus metrics",
        Answer("Prometheus text", {"type": "string"}, "text/plain"),
    ),
    Route(
        "GET",
        "/openapi.json",
        Access.PUBLIC,
        lambda h: h.openapi,
        "This document",
        Answer("OpenAPI 3.1", {"type": "object"}),
    ),
)
