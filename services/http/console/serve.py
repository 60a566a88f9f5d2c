"""Serving the console's files: `GET /console` and `GET /console/<file>`.

The page holds no data: every call it makes carries the admin key the operator typed, so the
files themselves are public. What is served is fixed when the app is built (the files of
`static/`, looked up by exact name: no path is ever joined from a request), and every answer
carries a Content-Security-Policy that allows this origin's scripts, styles and API calls
only: no inline script, no inline style, no other origin, no framing.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from events import rules
from services.http.wire import WireError

STATIC = Path(__file__).parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(STATIC.rglob("*")):
        kind = _TYPES.get(path.suffix)
        if path.is_file() and kind is not None:
            files[path.relative_to(STATIC).as_posix()] = (path.read_bytes(), kind)
    return files


class Console:
    def __init__(self) -> None:
        self.files = _load()

    def _answer(self, name: str) -> web.Response:
        found = self.files.get(name)
        if found is None:
            raise WireError(rules.INVALID_REQUEST, "No such console file", 404)
        body, kind = found
        return web.Response(body=body, headers={**HEADERS, "Content-Type": kind})

    async def page(self, request: web.Request) -> web.Response:
        return self._answer("index.html")

    async def asset(self, request: web.Request) -> web.Response:
        return self._answer(request.match_info["name"])
