"""The HTTP middleware: a latency histogram per route, and Backendless-style errors for
everything that goes wrong, so nothing a client sends can cause a 500 body of aiohttp's own."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from events import rules
from services.http.wire import WireError, error_response
from services.metrics import Metrics

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
CLIENT_CLOSED_REQUEST = 499  # nginx's status for it: counted apart from answers and errors


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def timed(metrics: Metrics) -> Middleware:
    """Latency histogram per route template and method (templates: bounded label values)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        metrics.observe(
            "devreg_http_request_duration_seconds",
            time.perf_counter() - started,
            method=request.method,
            route=route,
            status=str(response.status),
        )
        return response

    return middleware


@web.middleware
async def backendless_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as a Backendless-style body; nothing a client sends can cause a 500."""
    try:
        return await handler(request)
    except WireError as exc:
        return error_response(exc.code, exc.message, exc.status)
    except ConnectionResetError:
        # The client went away before its request was read whole: no one to answer, and not
        # a server error (logging it as one would let any client flood the error log).
        log.debug("client went away during %s %s", request.method, request.path)
        return web.Response(status=CLIENT_CLOSED_REQUEST)
    except web.HTTPRequestEntityTooLarge:
        limit = f"Request body exceeds the limit of {MAX_BODY_BYTES} bytes"
        return error_response(rules.INVALID_REGISTRATION, limit, 413)
    except web.HTTPMethodNotAllowed as exc:
        response = error_response(exc.status, exc.reason, exc.status)
        response.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        return response
    except web.HTTPException as exc:
        return error_response(exc.status, exc.reason, exc.status)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Internal server error", 500)
