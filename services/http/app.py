"""Every HTTP route of devreg, in one readable table."""

from __future__ import annotations

from aiohttp import web

from services.http.api import Api
from services.http.channels import Targeting
from services.http.device_history import History
from services.http.middleware import MAX_BODY_BYTES, backendless_errors, timed
from services.http.openapi import openapi_handler

CLASSIC = "/{app_id}/{api_key}"
# The custom-domain form: registered first, so "/api/…" is never read as an app id.
DOMAIN = "/api"


def build_http_app(api: Api, events_topic: str) -> web.Application:
    app = web.Application(
        middlewares=[timed(api.metrics), backendless_errors], client_max_size=MAX_BODY_BYTES
    )
    targeting = Targeting(api, events_topic)
    history = History(api)
    add = app.router.add_route
    for base in (DOMAIN, CLASSIC):
        registrations = f"{base}/messaging/registrations"
        add("POST", registrations, api.register)
        add("GET", registrations + "/{device_id}", api.retrieve)
        add("DELETE", registrations + "/{device_id}", api.unregister)
        add("GET", registrations + "/{device_id}/history", history.history)
        add("GET", registrations + "/{device_id}/as-of/{instant}", history.as_of)
        add("GET", f"{base}/info", api.empty)
        add("GET", f"{base}/messaging/pushtemplates", api.empty)
        add("GET", f"{base}/messaging/pushtemplates/{{kind}}", api.empty)
        channels = f"{base}/messaging/channels"
        add("GET", channels, targeting.channels)
        add("GET", channels + "/{channel}/devices", targeting.devices)
        add("GET", channels + "/{channel}/devices.ndjson", targeting.export)
    add("GET", "/healthz", api.healthz)
    add("GET", "/readyz", api.readyz)
    add("GET", "/metrics", api.metrics_text)
    add("GET", "/openapi.json", openapi_handler)
    return app
