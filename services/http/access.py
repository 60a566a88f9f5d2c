"""Who may call what: the two keys of an app, the three URL bases, and the guard every route
is served through (docs/security.md).

- The REST key is in every mobile app that uses it: public. In the classic base
  `/{app_id}/{api_key}/...` it opens the Backendless routes only.
- The admin key is the operator's, sent in the `X-Devreg-Admin-Key` header. It alone opens
  what goes beyond Backendless (channel lists, exports, history, as-of, ...), on any base.
- `/api/...` (the custom-domain form) names no app and no key: it is off unless one app is
  configured for it (DEVREG_DOMAIN_APP), and then opens no more than that app's REST key.
- `/admin/{app_id}/...` carries no REST key: every route there needs the admin key.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

from aiohttp import web

from events import rules
from services.config import AppKeys
from services.http.wire import WireError

ADMIN_HEADER = "X-Devreg-Admin-Key"
_APP_ID = "devreg.app_id"  # the request's authorized app, set by the guard
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Access(enum.Enum):
    PUBLIC = "public"  # no key: probes, metrics, the OpenAPI document
    REST = "rest"  # the app's REST key (or the custom-domain form): the Backendless routes
    ADMIN = "admin"  # the app's admin key in the X-Devreg-Admin-Key header: everything else


class Base(enum.Enum):
    """Where an app's routes are served, as a path prefix."""

    CLASSIC = "/{app_id}/{api_key}"
    DOMAIN = "/api"
    ADMIN = "/admin/{app_id}"


def _same(expected: str, given: str) -> bool:
    # Compared as bytes in constant time (compare_digest refuses non-ASCII text), and compared
    # even when nothing is expected, so timing tells nothing about which part was wrong.
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")) and bool(
        expected
    )


def _unknown_app() -> WireError:
    return WireError(rules.UNKNOWN_APP, "Unknown application id or REST API key", 401)


class Keys:
    """Every app's keys, and the app served by the custom-domain form (if any)."""

    def __init__(self, apps: Mapping[str, AppKeys], domain_app: str | None):
        self.apps = dict(apps)
        self.domain_app = domain_app

    def bases(self, access: Access, console: bool = False) -> tuple[Base, ...]:
        """The bases a route of `access` is served on (`console`: a REST route an operator's
        console also reads, served on the admin base too)."""
        if access is Access.PUBLIC:
            return ()
        domain = (Base.DOMAIN,) if self.domain_app else ()
        admin = (Base.ADMIN,) if access is Access.ADMIN or console else ()
        # The admin base first: `/admin/x/...` must never be read as app "admin", key "x".
        return (*admin, *domain, Base.CLASSIC)

    def authorize(self, request: web.Request, base: Base, access: Access) -> str:
        """The app the request may act for, or a WireError (401/403)."""
        if base is Base.DOMAIN:
            assert self.domain_app is not None  # no domain routes exist otherwise
            app_id = self.domain_app
        elif base is Base.CLASSIC:
            app_id = request.match_info["app_id"]
            known = self.apps.get(app_id)
            if not _same(known.rest if known else "", request.match_info["api_key"]):
                raise _unknown_app()
        else:
            app_id = request.match_info["app_id"]
        if access is Access.ADMIN or base is Base.ADMIN:
            self._admin(app_id, request.headers.get(ADMIN_HEADER))
        return app_id

    def _admin(self, app_id: str, given: str | None) -> None:
        known = self.apps.get(app_id)
        if known is not None and known.admin is None:
            raise WireError(
                rules.ADMIN_ROUTES_CLOSED,
                f"App {app_id!r} has no admin key configured: its admin routes are closed",
                403,
            )
        if given is None:
            raise WireError(
                rules.ADMIN_KEY_REQUIRED, f"This route needs the {ADMIN_HEADER} header", 401
            )
        # An unknown app is answered as a wrong key: the admin base reveals no app ids.
        expected = known.admin if known is not None and known.admin else ""
        if not _same(expected, given):
            raise WireError(rules.ADMIN_KEY_REQUIRED, f"Wrong {ADMIN_HEADER} for this app", 401)

    def guard(self, base: Base, access: Access, handler: Handler) -> Handler:
        """`handler`, served only to a request that may call it, with its app id set."""
        if access is Access.PUBLIC:
            return handler

        async def guarded(request: web.Request) -> web.StreamResponse:
            request[_APP_ID] = self.authorize(request, base, access)
            return await handler(request)

        return guarded


def app_of(request: web.Request) -> str:
    """The app id the guard authorized this request for."""
    return cast(str, request[_APP_ID])
