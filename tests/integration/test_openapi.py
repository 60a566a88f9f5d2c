"""The OpenAPI document lists exactly the routes aiohttp serves (both come from one table), and
schemathesis, fuzzing every operation of it against a running worker, finds no 500, no status
the document does not declare, and no answer that contradicts its schema.

The budget is the Hypothesis profile's (tests/conftest.py): a fixed, derandomized one in
`make test`, a large one with a random seed in `make fuzz`.
"""

from __future__ import annotations

import re
from typing import Any, cast

import aiohttp
import msgspec
import schemathesis
from aiohttp import web
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from services.config import AppKeys
from services.http.access import ADMIN_HEADER, Keys
from services.http.api import Api
from services.http.app import build_http_app
from services.http.openapi import build_document, camel
from services.http.token_admin import TokenAdmin
from tests.support import ADMIN_KEYS, APPS, WorkerProcess

APP = next(iter(APPS))
# The keys and the custom-domain app of every test worker (tests/support.py).
KEYS = Keys({a: AppKeys(k, ADMIN_KEYS[a]) for a, k in APPS.items()}, domain_app=APP)


class _Handlers:
    """Stands in for the Api: the route table only looks handlers up, never calls them."""

    metrics: Any = None

    def __getattr__(self, name: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            raise AssertionError(f"{name} is not called by this test")

        return handler


def _routes(keys: Keys) -> set[tuple[str, str]]:
    app = build_http_app(cast(Api, _Handlers()), "events", keys, cast(TokenAdmin, _Handlers()))
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path") or ""
        path = re.sub(r"\{(\w+)\}", lambda m: "{" + camel(m.group(1)) + "}", path)
        if route.method != "HEAD":
            found.add((route.method, path))
    return found


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }


def test_given_the_router_then_the_document_lists_exactly_its_routes() -> None:
    closed = Keys(KEYS.apps, domain_app=None)
    for keys in (KEYS, closed):
        assert _documented(build_document(keys)) == _routes(keys)
    # And the custom-domain form exists only where it is configured
    assert any(path.startswith("/api/") for _, path in _routes(KEYS))
    assert not any(path.startswith("/api/") for _, path in _routes(closed))


def test_given_the_document_then_every_admin_operation_names_the_admin_key_scheme() -> None:
    document = build_document(KEYS)
    scheme = document["components"]["securitySchemes"]["adminKey"]
    assert scheme == {"type": "apiKey", "in": "header", "name": ADMIN_HEADER}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            admin = path.startswith("/admin/") or "/channels" in path or "/history" in path
            admin = admin or "/as-of/" in path or path.endswith("/live")
            admin = admin or "/tokens/" in path or path.endswith("/forget")
            assert ("security" in operation) == admin, (method, path)


async def test_given_a_running_worker_then_it_serves_this_document(
    devreg_worker: WorkerProcess,
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{devreg_worker.base_url}/openapi.json") as response,
    ):
        served = msgspec.json.decode(await response.read())
    assert served == msgspec.json.decode(msgspec.json.encode(build_document(KEYS)))


schema = schemathesis.openapi.from_dict(build_document(KEYS))
# The keys are pinned so that most cases pass the key check and reach the parsers; every
# other parameter, and the body, is generated.
schema.config.update(
    parameters={"path.appId": APP, "path.apiKey": APPS[APP]},
    headers={ADMIN_HEADER: ADMIN_KEYS[APP]},
)
# The live tail never ends by itself: its stream is checked up to its first event (`ready`),
# which it sends once it watches every partition.
schema.config.max_stream_events = 1


@schema.parametrize()
def test_given_any_request_to_any_route_then_no_500_and_the_document_holds(
    case: schemathesis.Case, devreg_worker: WorkerProcess
) -> None:
    case.call_and_validate(
        base_url=devreg_worker.base_url,
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
    )
