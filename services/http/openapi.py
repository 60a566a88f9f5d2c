"""The OpenAPI 3.1 document, generated from the same msgspec types the handlers use.

`tests/integration/test_openapi.py` checks that it lists exactly the routes of routes.py.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from services.http.channels import ChannelsAnswer, DevicesAnswer
from services.http.device_history import HistoryPage
from services.http.wire import (
    ErrorBody,
    RegisterBody,
    RegisterResponse,
    Registration,
    UnregisterResponse,
)

_TYPES = (
    HistoryPage,
    RegisterBody,
    RegisterResponse,
    Registration,
    UnregisterResponse,
    ErrorBody,
    ChannelsAnswer,
    DevicesAnswer,
)
_REF = "#/components/schemas/{name}"


def _ref(kind: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=kind.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json(_ref(ErrorBody), "Backendless error (code names the problem)"),
    "401": _json(_ref(ErrorBody), "Unknown application id or REST API key (code 8002)"),
}
_UNAVAILABLE = {"503": _json(_ref(ErrorBody), "Kafka unavailable or not visible in time")}
_EMPTY = {"200": _json({"type": "object"}, "Nothing to configure")}


def _param(name: str, where: str = "path", **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema or {"type": "string"},
    }


def _app_operations(credentials: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    device = [*credentials, _param("deviceId")]
    channel = [*credentials, _param("channel")]
    page_query = [
        _param("cursor", "query"),
        _param("limit", "query", type="integer", minimum=1, maximum=1000),
        _param("os", "query", type="string", enum=["IOS", "ANDROID", "WP", "OSX"]),
    ]
    body = {"required": True, "content": {"application/json": {"schema": _ref(RegisterBody)}}}
    return {
        "/messaging/registrations": {
            "post": {
                "summary": "Register a device (Backendless)",
                "parameters": credentials,
                "requestBody": body,
                "responses": {
                    "200": _json(_ref(RegisterResponse), "Registered and visible"),
                    **_ERRORS,
                    "413": _json(_ref(ErrorBody), "Body over 64 KiB"),
                    **_UNAVAILABLE,
                },
            }
        },
        "/messaging/registrations/{deviceId}": {
            "get": {
                "summary": "A device's registration (Backendless)",
                "parameters": device,
                "responses": {
                    "200": _json(
                        {"type": "array", "items": _ref(Registration)}, "One registration"
                    ),
                    **_ERRORS,
                },
            },
            "delete": {
                "summary": "Cancel a registration, or only some channels (Backendless)",
                "parameters": [*device, _param("channels", "query")],
                "responses": {
                    "200": _json(_ref(UnregisterResponse), "Unregistered"),
                    **_ERRORS,
                    **_UNAVAILABLE,
                },
            },
        },
        "/messaging/registrations/{deviceId}/history": {
            "get": {
                "summary": "The device's events, oldest first, paged by version",
                "parameters": [
                    *device,
                    _param("after", "query", type="integer", minimum=0),
                    _param("limit", "query", type="integer", minimum=1, maximum=1000),
                ],
                "responses": {"200": _json(_ref(HistoryPage), "A page of events"), **_ERRORS},
            }
        },
        "/messaging/registrations/{deviceId}/as-of/{instant}": {
            "get": {
                "summary": "The registration as it was at an instant (ms or ISO-8601)",
                "parameters": [*device, _param("instant")],
                "responses": {
                    "200": _json({"type": "array", "items": _ref(Registration)}, "Then"),
                    **_ERRORS,
                },
            }
        },
        "/info": {"get": {"parameters": credentials, "responses": {**_EMPTY, **_ERRORS}}},
        "/messaging/pushtemplates": {
            "get": {"parameters": credentials, "responses": {**_EMPTY, **_ERRORS}}
        },
        "/messaging/pushtemplates/{kind}": {
            "get": {
                "parameters": [*credentials, _param("kind")],
                "responses": {**_EMPTY, **_ERRORS},
            }
        },
        "/messaging/channels": {
            "get": {
                "summary": "The app's channels with their active device counts",
                "parameters": credentials,
                "responses": {"200": _json(_ref(ChannelsAnswer), "Channels"), **_ERRORS},
            }
        },
        "/messaging/channels/{channel}/devices": {
            "get": {
                "summary": "Devices on a channel, keyset-paged in device id order",
                "parameters": [*channel, *page_query],
                "responses": {"200": _json(_ref(DevicesAnswer), "A page"), **_ERRORS},
            }
        },
        "/messaging/channels/{channel}/devices.ndjson": {
            "get": {
                "summary": "Every device on a channel, streamed as NDJSON",
                "parameters": [*channel, page_query[2]],
                "responses": {
                    "200": {
                        "description": "One ChannelDevice JSON object per line",
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    },
                    **_ERRORS,
                },
            }
        },
    }


def build_document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(_TYPES, ref_template=_REF)
    classic = [_param("appId"), _param("apiKey")]
    paths: dict[str, Any] = {}
    for prefix, credentials in (("/api", []), ("/{appId}/{apiKey}", classic)):
        for path, operations in _app_operations(credentials).items():
            paths[prefix + path] = operations
    plain = {"description": "OK"}
    paths["/healthz"] = {"get": {"responses": {"200": plain}}}
    paths["/readyz"] = {"get": {"responses": {"200": plain, "503": {"description": "Not ready"}}}}
    paths["/metrics"] = {"get": {"responses": {"200": {"description": "Prometheus text"}}}}
    paths["/openapi.json"] = {"get": {"responses": {"200": {"description": "This document"}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "devreg",
            "version": "0.1.0",
            "description": "Backendless-compatible device registry",
        },
        "paths": paths,
        "components": {"schemas": components},
    }


_DOCUMENT = msgspec.json.encode(build_document())


async def openapi_handler(request: web.Request) -> web.Response:
    return web.Response(body=_DOCUMENT, content_type="application/json")
