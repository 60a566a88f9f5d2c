"""The worker's HTTP server: the aiohttp app on its listener, with devreg's connection limits."""

from __future__ import annotations

import logging

from aiohttp import web

from services.config import Settings
from services.http.access import Keys
from services.http.api import LINGER_S, Api
from services.http.app import build_http_app
from services.http.middleware import AccessLog, MalformedRequests
from services.http.token_admin import TokenAdmin

log = logging.getLogger(__name__)


async def serve(settings: Settings, api: Api, tokens: TokenAdmin) -> web.AppRunner:
    """Listen on DEVREG_HTTP_HOST:PORT; returns the runner to clean up on the way out."""
    s = settings
    debug = log.isEnabledFor(logging.DEBUG)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequests())
    runner = web.AppRunner(
        build_http_app(api, s.events_topic, Keys(s.apps, s.domain_app), tokens),
        # At debug level, one line per request (its path redacted); none otherwise.
        access_log=logging.getLogger("devreg.access") if debug else None,
        access_log_class=AccessLog,
        # Also the deadline for a new connection's first request: aiohttp arms it when the
        # connection opens and does not extend it while header bytes trickle in, so a client
        # that never completes its headers cannot hold a connection (slowloris).
        keepalive_timeout=s.http_idle_timeout_ms / 1000,
        lingering_time=LINGER_S,
    )
    await runner.setup()
    try:
        # aiohttp's default accept queue (128) overflows under open-loop load: the kernel drops
        # the connections, and their clients wait a second or more to try again.
        await web.TCPSite(runner, s.http_host, s.http_port, backlog=s.http_backlog).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
