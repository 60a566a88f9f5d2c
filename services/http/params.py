"""Every path and query parameter of the HTTP API, parsed in one place.

A parser answers the value, or raises a WireError (HTTP 400, a Backendless code, a message
naming the parameter): never an exception of Python's own, which would be a 500. Numbers are
ASCII digits of bounded length (`'²'.isdigit()` is true and `int('²')` raises; `int()` of
5,000 digits is refused by Python itself), text is non-empty and printable, times are
bounded. The route table (services/http/routes.py) declares which parameters each route
takes, so the OpenAPI document describes them from the same objects.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from aiohttp import web

from events import rules
from services.http.wire import WireError

T = TypeVar("T")
MAX_PAGE = 1000
DEFAULT_PAGE = 100
_MAX_DIGITS = 19  # below 2**63: SQLite's integers, and no int() of thousands of digits
_MAX_INSTANT_TEXT = 64  # the longest ISO-8601 text worth parsing
# A cursor is a device id (at most 500 characters, 4 UTF-8 bytes each) in unpadded base64.
_MAX_CURSOR = (rules.MAX_FIELD_LENGTH * 4 * 4 + 2) // 3


def invalid(name: str, message: str) -> WireError:
    return WireError(rules.INVALID_REQUEST, f"Parameter '{name}' {message}")


def _digits(name: str, raw: str, low: int, high: int) -> int:
    if not (0 < len(raw) <= _MAX_DIGITS and raw.isascii() and raw.isdigit()):
        raise invalid(name, f"must be an integer in [{low}, {high}] (ASCII digits)")
    value = int(raw)
    if not low <= value <= high:
        raise invalid(name, f"must be an integer in [{low}, {high}], got {value}")
    return value


def integer(name: str, low: int, high: int, default: int) -> Callable[[str | None], int]:
    def parse(raw: str | None) -> int:
        return default if raw is None else _digits(name, raw, low, high)

    return parse


def segment(name: str) -> Callable[[str | None], str]:
    """A path segment naming something (a device, a template kind): non-empty, at most 500
    characters, no '/' (which a percent-encoded slash decodes to) and no control character."""

    def parse(raw: str | None) -> str:
        value = raw or ""
        if not value:
            raise invalid(name, "must not be empty")
        if len(value) > rules.MAX_FIELD_LENGTH:
            raise WireError(
                rules.LENGTH_EXCEEDED,
                f"Parameter '{name}' exceeds the length limit of {rules.MAX_FIELD_LENGTH}",
            )
        if "/" in value or rules.unprintable(value):
            raise invalid(name, f"({value!r}) must contain no '/' or control character")
        return value

    return parse


def device_id(raw: str | None) -> str:
    return segment("deviceId")(raw)


def channel(raw: str | None) -> str:
    """A channel name, by the rule registrations follow (events/rules.py)."""
    if rejection := rules.check_channel(raw or ""):
        raise WireError(rejection.code, rejection.message)
    return raw or ""


def channel_list(raw: str | None) -> tuple[str, ...] | None:
    """`?channels=a,b` of DELETE: None when absent (the whole registration)."""
    if raw is None:
        return None
    channels = tuple(raw.split(","))
    if rejection := rules.check_channels(channels):
        raise WireError(rejection.code, rejection.message)
    return channels


def os_filter(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = raw.upper()
    if value not in rules.OS_VALUES:
        allowed = ", ".join(sorted(rules.OS_VALUES))
        raise invalid("os", f"must be one of {allowed}, got {raw[:50]!r}")
    return value


def encode_cursor(device: str) -> str:
    return base64.urlsafe_b64encode(device.encode()).decode().rstrip("=")


def cursor(raw: str | None) -> str:
    """The device id a page starts after ("" for the first page)."""
    if not raw:
        return ""
    if len(raw) > _MAX_CURSOR or not raw.isascii():
        raise invalid("cursor", "is not a cursor this server issued")
    try:
        padded = raw + "=" * (-len(raw) % 4)
        value = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid("cursor", "is not a cursor this server issued") from None
    if len(value) > rules.MAX_FIELD_LENGTH or rules.unprintable(value):
        raise invalid("cursor", "is not a cursor this server issued")
    return value


def instant(raw: str | None) -> int:
    """ms since the epoch, or ISO-8601 (UTC when no offset is given), from 1970 to the
    latest instant a JavaScript Date holds."""
    return _instant("instant", raw)


def optional_instant(name: str) -> Callable[[str | None], int | None]:
    """A query's instant, as `instant` reads it; None when absent (the route's default)."""

    def parse(raw: str | None) -> int | None:
        return None if raw is None else _instant(name, raw)

    return parse


def _instant(name: str, raw: str | None) -> int:
    text = raw or ""
    if text.isascii() and text.isdigit():
        return _digits(name, text, 0, rules.MAX_TIME_MS)
    if not text or len(text) > _MAX_INSTANT_TEXT:
        raise invalid(name, "must be ms since the epoch or an ISO-8601 time")
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        ms = int(moment.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise invalid(name, f"({text!r}) must be ms since the epoch or an ISO-8601 time") from None
    if not 0 <= ms <= rules.MAX_TIME_MS:
        raise invalid(name, f"({text!r}) is before 1970 or out of range")
    return ms


@dataclass(frozen=True)
class Param(Generic[T]):
    """One parameter a route takes: how it is read (and refused), and how it is documented."""

    name: str  # as the URL names it: `{name}` in a path template, or `?name=`
    where: Literal["path", "query"]
    parse: Callable[[str | None], T]
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    description: str = ""

    def read(self, request: web.Request) -> T:
        source = request.match_info if self.where == "path" else request.query
        return self.parse(source.get(self.name))


_PAGE = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}
DEVICE_ID = Param("device_id", "path", device_id, {"type": "string", "minLength": 1})
CHANNEL = Param("channel", "path", channel, {"type": "string", "minLength": 1})
KIND = Param("kind", "path", segment("kind"))
INSTANT = Param("instant", "path", instant, description="ms since the epoch, or ISO-8601")
CHANNELS = Param("channels", "query", channel_list, description="a,b: only these channels")
LIMIT = Param("limit", "query", integer("limit", 1, MAX_PAGE, DEFAULT_PAGE), _PAGE)
CURSOR = Param("cursor", "query", cursor, description="nextCursor of the previous page")
OS = Param(
    "os", "query", os_filter, {"type": "string", "enum": sorted(rules.OS_VALUES)}, "OS filter"
)
MAX_POINTS = 500  # instants of a channel's series: its answer's size, whatever the history's
POINTS = Param(
    "points",
    "query",
    integer("points", 2, MAX_POINTS, 60),
    {"type": "integer", "minimum": 2, "maximum": MAX_POINTS},
    "instants, evenly spaced from since to until (both included)",
)
SINCE = Param("since", "query", optional_instant("since"), description="default: a day ago")
UNTIL = Param("until", "query", optional_instant("until"), description="default: now")


def optional_name(name: str) -> Callable[[str | None], str | None]:
    """A query's name (a channel, a device) as a path segment is read; None when absent."""
    read = segment(name)

    def parse(raw: str | None) -> str | None:
        return None if raw is None else read(raw)

    return parse


LIVE_CHANNEL = Param("channel", "query", optional_name("channel"), description="only its events")
LIVE_DEVICE = Param("device", "query", optional_name("device"), description="only its events")


def any_text(raw: str | None) -> str:
    """Any text: for a name only ever looked up in a fixed table (a console file)."""
    return raw or ""


CONSOLE_FILE = Param("name", "path", any_text, description="a file of the console")
AFTER = Param(
    "after",
    "query",
    integer("after", 0, 2**62, 0),
    {"type": "integer", "minimum": 0},
    "nextAfter of the previous page",
)
