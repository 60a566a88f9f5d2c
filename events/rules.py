"""Validation rules shared by HTTP and Kafka commands, with Backendless error codes."""

from __future__ import annotations

import math
import unicodedata

import msgspec

from events import sealed
from events.model import (
    AnyCommand,
    ExpireRegistration,
    ExpireRegistrations,
    ForgetDevice,
    RegisterDevice,
    ReportRejectedToken,
    SupersedeDevice,
    UnregisterDevice,
)

# Backendless error codes devreg answers with (HTTP 400 unless noted).
UNKNOWN_DEVICE_GET = 5000
UNKNOWN_DEVICE_DELETE = 5001
INVALID_REGISTRATION = 5002
INVALID_REQUEST = INVALID_REGISTRATION  # the same code for a malformed query
INVALID_EXPIRATION = 5004
NOT_VISIBLE_IN_TIME = 5900  # HTTP 503: accepted by Kafka, not yet visible to queries
KAFKA_UNAVAILABLE = 5901  # HTTP 503: Kafka did not acknowledge the command (retry is safe)
PARTITION_MOVING = 5902  # HTTP 503: the device's partition is being reassigned (retry)
TOO_MANY_VIEWERS = 5903  # HTTP 503: a worker serves a bounded number of live streams
SERVER_BUSY = 5904  # HTTP 503: too many writes waiting already; nothing was sent (retry)
LENGTH_EXCEEDED = 8000
UNKNOWN_APP = 8002  # HTTP 401 (not 3064: the JS SDK reads that as a stale user token)
ADMIN_KEY_REQUIRED = 8003  # HTTP 401: an admin route without the app's admin key
ADMIN_ROUTES_CLOSED = 8004  # HTTP 403: the app has no admin key, so no admin route is open

MAX_FIELD_LENGTH = 500
MAX_CHANNELS = 100
# Devices in one `expire-registrations/1` command: its outcome lists them, and a processor
# batch takes whole commands.
MAX_EXPIRY_DEVICES = 1000
OS_VALUES = frozenset({"IOS", "ANDROID", "WP", "OSX"})
DEFAULT_CHANNEL = "default"
# Below this an expiration is read as seconds: the JS SDK sends a Date as (fractional) seconds.
SECONDS_CUTOFF = 10**11
# The latest instant a JavaScript Date can hold; far below SQLite's 64-bit integer limit.
MAX_TIME_MS = 8_640_000_000_000_000


class Rejection(msgspec.Struct, frozen=True):
    code: int
    message: str


def expiration_to_ms(value: float | int | None) -> int | None:
    """Backendless expiration (ms, or seconds below 10^11) to ms since epoch."""
    if value is None:
        return None
    if not math.isfinite(value) or abs(value) > MAX_TIME_MS:
        return MAX_TIME_MS + 1  # out of range: `check_register` rejects it with 5004
    if value < SECONDS_CUTOFF:
        return round(value * 1000)
    return round(value)


def _length(name: str, value: str) -> Rejection | None:
    if len(value) > MAX_FIELD_LENGTH:
        return Rejection(
            LENGTH_EXCEEDED,
            f"Value of property '{name}' exceeds the length limit of {MAX_FIELD_LENGTH}",
        )
    return None


def _required(name: str, value: str) -> Rejection | None:
    if not value:
        return Rejection(INVALID_REGISTRATION, f"Property '{name}' is required")
    return _length(name, value)


# Characters no name devreg keeps may hold. '/' cannot travel in a URL path segment (the JS
# SDK refuses it in channel names), ',' separates `registrationId` pairs and `?channels=a,b`.
# Control characters (C0, DEL, C1: Unicode category Cc) and lone surrogates (Cs, which no
# UTF-8 encoder accepts) are refused everywhere: they cannot be shown, logged or typed.
_CHANNEL_SEPARATORS = frozenset("/,")
_UNPRINTABLE = frozenset({"Cc", "Cs"})


def unprintable(value: str) -> bool:
    """Whether `value` holds a control character or a lone surrogate."""
    # Most names are printable ASCII: that test is one C call, the per-character one is not.
    if value.isascii() and value.isprintable():
        return False
    return any(unicodedata.category(c) in _UNPRINTABLE for c in value)


def check_channel(channel: str) -> Rejection | None:
    """One channel name: non-empty, no '/', ',' or control character, at most 500 long."""
    if not channel or not _CHANNEL_SEPARATORS.isdisjoint(channel) or unprintable(channel):
        return Rejection(
            INVALID_REGISTRATION,
            f"Channel name {channel!r} is invalid: it must be non-empty and contain no '/',"
            " ',' or control character",
        )
    return _length("channels", channel)


def _token(name: str, value: str) -> Rejection | None:
    """A personal value: raw (a Kafka publisher's, sealed by the processor before deciding)
    within the length limit, or sealed text of the form devreg writes."""
    if sealed.is_sealed(value):
        if sealed.well_formed(value):
            return None
        message = f"Property '{name}' is not a well-formed sealed value"
        return Rejection(INVALID_REGISTRATION, message)
    return _required(name, value)


def check_channels(channels: tuple[str, ...]) -> Rejection | None:
    if len(channels) > MAX_CHANNELS:
        return Rejection(
            INVALID_REGISTRATION, f"Property 'channels' names more than {MAX_CHANNELS} channels"
        )
    for channel in channels:
        if rejection := check_channel(channel):
            return rejection
    return None


def check_device_id(device_id: str) -> Rejection | None:
    """A device id a URL can name: non-empty, at most 500 long, no '/' (a path segment cannot
    hold one: GET and DELETE could never address the device) and no control character."""
    if rejection := _required("deviceId", device_id):
        return rejection
    if "/" in device_id or unprintable(device_id):
        return Rejection(
            INVALID_REGISTRATION,
            f"Property 'deviceId' ({device_id!r}) must contain no '/' or control character",
        )
    return None


def check_identity(command: AnyCommand) -> Rejection | None:
    if command.issued_at is not None and not 0 <= command.issued_at <= MAX_TIME_MS:
        return Rejection(INVALID_REGISTRATION, "Property 'issuedAt' is out of range")
    if rejection := _required("commandId", command.command_id) or _required(
        "appId", command.app_id
    ):
        return rejection
    if isinstance(command, ExpireRegistrations):
        return None  # its devices are checked one by one (check_expiries)
    return _required("deviceId", command.device_id)


def check_expiries(command: ExpireRegistrations) -> Rejection | None:
    """Between 1 and MAX_EXPIRY_DEVICES devices, each named once, with a valid id."""
    if not 1 <= len(command.devices) <= MAX_EXPIRY_DEVICES:
        return Rejection(
            INVALID_REQUEST,
            f"Property 'devices' must name 1 to {MAX_EXPIRY_DEVICES} devices,"
            f" got {len(command.devices)}",
        )
    seen: set[str] = set()
    for due in command.devices:
        if rejection := check_device_id(due.device_id):
            return rejection
        if due.device_id in seen:
            return Rejection(
                INVALID_REQUEST, f"Property 'devices' names device {due.device_id!r} twice"
            )
        seen.add(due.device_id)
    return None


def check_register(command: RegisterDevice, now_ms: int) -> Rejection | None:
    rejection = (
        check_device_id(command.device_id)
        or _token("deviceToken", command.device_token)
        or _length("osVersion", command.os_version)
        or check_channels(command.channels)
    )
    if rejection:
        return rejection
    if command.os.upper() not in OS_VALUES:
        allowed = ", ".join(sorted(OS_VALUES))
        return Rejection(
            INVALID_REGISTRATION, f"Property 'os' must be one of {allowed}, got {command.os!r}"
        )
    if command.expiration is not None and command.expiration <= now_ms:
        return Rejection(
            INVALID_EXPIRATION,
            f"Property 'expiration' ({command.expiration} ms) must be in the future",
        )
    if command.expiration is not None and command.expiration > MAX_TIME_MS:
        return Rejection(
            INVALID_EXPIRATION,
            f"Property 'expiration' is out of range (at most {MAX_TIME_MS} ms since epoch)",
        )
    return None


def _time(name: str, value: int) -> Rejection | None:
    if not 0 <= value <= MAX_TIME_MS:
        return Rejection(INVALID_REQUEST, f"Property '{name}' is out of range")
    return None


def check_report(command: ReportRejectedToken) -> Rejection | None:
    return (
        _token("deviceToken", command.device_token)
        or _required("provider", command.provider)
        or _length("reason", command.reason)
        or _time("sentAt", command.sent_at)
    )


def check(command: AnyCommand, now_ms: int) -> Rejection | None:
    """Every rule a command must pass before it can be decided against state."""
    rejection = check_identity(command)
    if rejection:
        return rejection
    match command:
        case RegisterDevice():
            return check_register(command, now_ms)
        case UnregisterDevice(channels=channels) if channels is not None:
            return check_channels(channels)
        case ExpireRegistrations():
            return check_expiries(command)
        case ReportRejectedToken():
            return check_report(command)
        case SupersedeDevice():
            by, claim = command.by_device_id, command.claim
            return _required("byDeviceId", by) or _required("claim", claim)
        case ForgetDevice():
            return _required("reason", command.reason)
        case UnregisterDevice() | ExpireRegistration():
            return None
