"""The OpenAPI 3.1 document, generated from the route table (services/http/routes.py) and the
msgspec types the handlers use, for the bases this server serves (the custom-domain form only
when it is configured). `tests/integration/test_openapi.py` checks it lists exactly the routes
aiohttp serves, and fuzzes every one of them.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from services.http.access import ADMIN_HEADER, Access, Base, Keys
from services.http.params import Param
from services.http.routes import ROUTES, Answer, Route
from services.http.wire import ErrorBody

_REF = "#/components/schemas/{name}"
_ADMIN_SCHEME = "adminKey"
_STATUS = {
    400: "Backendless error: the code names the problem, the message the parameter",
    401: "Unknown app id or REST key (8002), or no valid admin key (8003)",
    403: "The app has no admin key: its admin routes are closed (8004)",
    408: "Request body not received in time (5002)",
    413: "Body over 64 KiB (5002)",
    503: (
        "Kafka unavailable (5901), not visible in time (5900), partition moving (5902), too"
        " many live streams (5903), or too many writes waiting (5904, with Retry-After)"
    ),
}
_PUBLIC_STATUS = {
    404: {"description": "No such file"},
    503: {"description": "Not ready"},
}
_BASE_PARAMS = {
    Base.CLASSIC: (Param("app_id", "path", str), Param("api_key", "path", str)),
    Base.DOMAIN: (),
    Base.ADMIN: (Param("app_id", "path", str),),
}


def camel(name: str) -> str:
    """aiohttp names path parameters in snake case, the document in camel case."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def document_path(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "{" + camel(m.group(1)) + "}", template)


def served(route: Route, keys: Keys) -> list[tuple[Base | None, str]]:
    """Each (base, aiohttp path template) a route is served at, in registration order."""
    if route.access is Access.PUBLIC:
        return [(None, route.path)]
    return [(base, base.value + route.path) for base in keys.bases(route.access, route.console)]


def _schema(value: Any) -> dict[str, Any]:
    if value is None or isinstance(value, dict):
        return value or {}
    (schema,), _ = msgspec.json.schema_components([value], ref_template=_REF)
    return dict(schema)


def _content(answer: Answer) -> dict[str, Any]:
    described: dict[str, Any] = {"description": answer.description}
    if answer.schema is not None:
        described["content"] = {answer.media: {"schema": _schema(answer.schema)}}
    return described


def _error(status: int) -> dict[str, Any]:
    return _content(Answer(_STATUS.get(status, "Error"), ErrorBody))


def _parameter(param: Param[Any]) -> dict[str, Any]:
    described: dict[str, Any] = {
        "name": camel(param.name),
        "in": param.where,
        "required": param.where == "path",
        "schema": param.schema,
    }
    if param.description:
        described["description"] = param.description
    return described


def _operation(route: Route, base: Base | None) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _content(route.ok)}
    if route.access is Access.PUBLIC:
        responses.update({str(s): _PUBLIC_STATUS[s] for s in route.errors})
    else:
        admin = route.access is Access.ADMIN or base is Base.ADMIN
        for status in sorted({400, 401, *((403,) if admin else ()), *route.errors}):
            responses[str(status)] = _error(status)
    operation: dict[str, Any] = {"summary": route.summary, "responses": responses}
    declared = [*(_BASE_PARAMS[base] if base else ()), *route.params]
    if declared:
        operation["parameters"] = [_parameter(param) for param in declared]
    if route.body is not None:
        content = {"application/json": {"schema": _schema(route.body)}}
        operation["requestBody"] = {"required": True, "content": content}
    if route.access is not Access.PUBLIC and (route.access is Access.ADMIN or base is Base.ADMIN):
        operation["security"] = [{_ADMIN_SCHEME: []}]
    return operation


def _types() -> list[Any]:
    kinds: list[Any] = [ErrorBody]
    for route in ROUTES:
        for value in (route.ok.schema, route.body):
            if value is not None and not isinstance(value, dict):
                kinds.append(value)
    return kinds


def build_document(keys: Keys) -> dict[str, Any]:
    _, components = msgspec.json.schema_components(_types(), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        for base, template in served(route, keys):
            operations = paths.setdefault(document_path(template), {})
            operations[route.method.lower()] = _operation(route, base)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "devreg",
            "version": "0.1.0",
            "description": "Backendless-compatible device registry. Admin routes need the"
            f" app's admin key in the {ADMIN_HEADER} header (docs/security.md).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                _ADMIN_SCHEME: {"type": "apiKey", "in": "header", "name": ADMIN_HEADER}
            },
        },
    }
