"""The aiohttp application, generated from the route table (services/http/routes.py): each
route on every base its access allows, behind the key check, its parameters parsed first."""

from __future__ import annotations

import msgspec
from aiohttp import web

from services.http.access import Handler, Keys
from services.http.api import Api
from services.http.channels import Targeting
from services.http.console.serve import Console
from services.http.device_history import History
from services.http.live import Live
from services.http.middleware import MAX_BODY_BYTES, backendless_errors, timed
from services.http.openapi import build_document, served
from services.http.routes import ROUTES, Handlers, Route
from services.http.token_admin import TokenAdmin


def _parsing(route: Route, handler: Handler) -> Handler:
    """Every declared parameter is parsed before the handler runs, even one the handler
    forwards without reading: anything a parser refuses is a 400 here, never a 500 later."""
    if not route.params:
        return handler

    async def parsed(request: web.Request) -> web.StreamResponse:
        for param in route.params:
            param.read(request)
        return await handler(request)

    return parsed


def build_http_app(api: Api, events_topic: str, keys: Keys, tokens: TokenAdmin) -> web.Application:
    app = web.Application(
        middlewares=[timed(api.metrics), backendless_errors], client_max_size=MAX_BODY_BYTES
    )
    document = msgspec.json.encode(build_document(keys))

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    live = Live(api)
    app.on_shutdown.append(live.close_streams)  # live streams end before the handlers wait
    handlers = Handlers(
        api, Targeting(api, events_topic), History(api), openapi, live, Console(), tokens
    )
    for route in ROUTES:
        handler = _parsing(route, route.handler(handlers))
        for base, template in served(route, keys):
            guarded = handler if base is None else keys.guard(base, route.access, handler)
            app.router.add_route(route.method, template, guarded)
    return app
