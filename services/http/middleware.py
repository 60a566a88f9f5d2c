"""The HTTP middleware: a latency histogram per route, Backendless-style errors for everything
that goes wrong (nothing a client sends can cause a 500 body of aiohttp's own), and what the
log may say of a request: its path with the key segment masked, never a header."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

from events import rules
from services.http.access import ADMIN_HEADER
from services.http.wire import WireError, error_response
from services.logs import MASK
from services.metrics import Metrics

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
CLIENT_CLOSED_REQUEST = 499  # nginx's status for it: counted apart from answers and errors


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# First path segments that are not an app id: the second segment of any other path may be a
# REST key (`/{app_id}/{api_key}/...`), whether or not the path names a route.
_NOT_AN_APP = frozenset({"", "api", "admin", "healthz", "readyz", "metrics", "openapi.json"})


def redacted_path(path: str) -> str:
    """A request path fit for a log: the REST key segment of `/{app_id}/{api_key}/...`
    masked (also in a path no route matches), and no query string."""
    parts = path.split("?", 1)[0].split("/", 3)
    if len(parts) >= 3 and parts[1] not in _NOT_AN_APP:
        parts[2] = MASK
    return "/".join(parts)


class AccessLog(AbstractAccessLogger):
    """One line per request at debug level: method, redacted path, status, time. Never a
    header (the admin key and the user's session token travel in headers)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            "%s %s %d %.1fms",
            request.method,
            redacted_path(request.raw_path),
            response.status,
            time * 1000,
        )


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


class MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot even parse (a control character in a header, a bad
    request line) as an ERROR with a traceback that quotes the offending bytes: a header
    value (a session token, an admin key) or a request line (a REST key). The client is
    answered 400 all the same; the log gets one debug line naming the error's kind only."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        record.msg = "refused a malformed HTTP request (%s %s)"
        record.args = (error.code, type(error).__name__)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return log.isEnabledFor(logging.DEBUG)


@web.middleware
async def backendless_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as a Backendless-style body; nothing a client sends can cause a 500."""
    try:
        return await handler(request)
    except WireError as exc:
        response = error_response(exc.code, exc.message, exc.status)
        if exc.retry_after_s:
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except ConnectionResetError:
        # The client went away before its request was read whole: no one to answer, and not
        # a server error (logging it as one would let any client flood the error log).
        log.debug("client went away during %s %s", request.method, redacted_path(request.raw_path))
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
    except Exception as exc:
        _log_unhandled(request, exc)
        return error_response(500, "Internal server error", 500)


def _log_unhandled(request: web.Request, exc: Exception) -> None:
    """A bug's traceback, with the request's own secrets masked wherever it quotes them: its
    key segment (a wrong key is no configured secret the log formatter would know), its admin
    key header and its session token."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    segments = request.raw_path.split("?", 1)[0].split("/")
    secrets = [
        request.match_info.get("api_key"),
        segments[2] if len(segments) > 2 and segments[1] not in _NOT_AN_APP else None,
        request.headers.get(ADMIN_HEADER),
        request.headers.get("user-token"),
    ]
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    path = redacted_path(request.raw_path)
    log.error("unhandled error on %s %s\n%s", request.method, path, text)
