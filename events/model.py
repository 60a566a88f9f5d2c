"""The facts (events), the requests (commands) and the answers (outcomes) of devreg.

Events are the log's records: frozen msgspec Structs in one tagged union, JSON on the wire so
kcat shows them as text. Tags are explicit and versioned (never the class name), so renaming a
class is not a data migration; a breaking change gets a new tag plus an upcaster.
"""

from __future__ import annotations

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """Shared envelope of every event.

    `omit_defaults` keeps the canonical encoding (and so the hash) of an old event unchanged
    when a later schema adds a field with a default. Unknown fields are allowed on purpose:
    old readers must decode newer events.
    """

    event_id: str
    app_id: str
    version: int
    occurred_at: int
    command_id: str
    prev_hash: str
    hash: str = ""


class DeviceRegistered(Event, frozen=True, kw_only=True, tag="device-registered/1"):
    device_id: str
    device_token: str
    os: str
    os_version: str
    channels: tuple[str, ...]
    registration_ids: dict[str, str]
    expiration: int | None = None
    # Events written before fingerprints carried the raw session token (redacted on output,
    # events/user_tokens.py); every event since carries only the keyed fingerprint.
    user_token: str | None = None
    user_token_fingerprint: str | None = None


class ChannelCreated(Event, frozen=True, kw_only=True, tag="channel-created/1"):
    """First time an app's registration names a channel. Its own one-event stream."""

    channel: str


class DeviceUnregistered(Event, frozen=True, kw_only=True, tag="device-unregistered/1"):
    device_id: str
    channels: tuple[str, ...]
    user_token: str | None = None  # before fingerprints only, as in DeviceRegistered
    user_token_fingerprint: str | None = None


class RegistrationExpired(Event, frozen=True, kw_only=True, tag="registration-expired/1"):
    device_id: str
    channels: tuple[str, ...]
    expiration: int


class TokenRejected(Event, frozen=True, kw_only=True, tag="token-rejected/1"):
    """A push provider rejected the token the device held when the push was sent: the device
    is removed (all its channels), and the event keeps the provider's reason."""

    device_id: str
    channels: tuple[str, ...]
    provider: str
    reason: str
    sent_at: int


class DeviceSuperseded(Event, frozen=True, kw_only=True, tag="device-superseded/1"):
    """Another device id of the app registered the token this device held: this registration
    is removed (all its channels) and names the newer device (one device per token)."""

    device_id: str
    channels: tuple[str, ...]
    by_device_id: str


class DeviceForgotten(Event, frozen=True, kw_only=True, tag="device-forgotten/1"):
    """The device's personal data was erased: its data keys are deleted, so every sealed copy
    of its push token and user token, in the log and everywhere else, is unreadable. The
    device's channels (all of them) are removed; its version and hash chain go on."""

    device_id: str
    channels: tuple[str, ...]
    reason: str


AnyEvent = (
    DeviceRegistered
    | ChannelCreated
    | DeviceUnregistered
    | RegistrationExpired
    | TokenRejected
    | DeviceSuperseded
    | DeviceForgotten
)
DeviceEvent = (
    DeviceRegistered
    | DeviceUnregistered
    | RegistrationExpired
    | TokenRejected
    | DeviceSuperseded
    | DeviceForgotten
)
# Events that remove every channel of a device, each for its own reason.
Removal = DeviceUnregistered | RegistrationExpired | TokenRejected | DeviceSuperseded
EVENT_TYPES: tuple[type[Event], ...] = (
    DeviceRegistered,
    ChannelCreated,
    DeviceUnregistered,
    RegistrationExpired,
    TokenRejected,
    DeviceSuperseded,
    DeviceForgotten,
)


class Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """Shared envelope of every command.

    `command_id` is the idempotency key (per app). `issued_at` (ms, UTC) is the decision's
    clock: a command re-processed after a crash decides exactly as the first time. When a
    Kafka producer leaves it out, the record's timestamp is used.
    """

    command_id: str
    app_id: str
    device_id: str
    issued_at: int | None = None
    # A Kafka publisher may send the raw session token: the processor fingerprints it before
    # deciding (events/user_tokens.py). The HTTP edge sends only the fingerprint.
    user_token: str | None = None
    user_token_fingerprint: str | None = None


class RegisterDevice(Command, frozen=True, kw_only=True, tag="register-device/1"):
    device_token: str
    os: str
    os_version: str
    channels: tuple[str, ...] = ()
    expiration: int | None = None


class UnregisterDevice(Command, frozen=True, kw_only=True, tag="unregister-device/1"):
    """`channels` None removes the whole registration; otherwise only those channels."""

    channels: tuple[str, ...] | None = None


class ExpireRegistration(Command, frozen=True, kw_only=True, tag="expire-registration/1"):
    """Sent by the scheduler; `expiration` is the one it saw. Stale commands are no-ops."""

    expiration: int


class DueExpiry(msgspec.Struct, frozen=True, kw_only=True):
    """One device of an `ExpireRegistrations`: the expiration and device version the
    scheduler saw in the projection."""

    device_id: str
    expiration: int
    version: int


class ExpireRegistrations(Command, frozen=True, kw_only=True, tag="expire-registrations/1"):
    """Sent by the scheduler: the expiries due on one commands partition, many devices of one
    app in one command (one pass through the consumer and one outcome for all of them).

    Each device is decided on its own, as an `ExpireRegistration` would be: its own
    `RegistrationExpired` (the id from the device's expiry, not from this command, so a
    re-sent command with other devices cannot shift it), or a no-op if nothing of it has
    expired. The envelope's `device_id` is empty: the devices are in `devices`.
    """

    device_id: str = ""
    devices: tuple[DueExpiry, ...]


class ReportRejectedToken(Command, frozen=True, kw_only=True, tag="report-rejected-token/1"):
    """A push sender's report that APNs or FCM rejected `device_token` for a push sent at
    `sent_at` (ms). It removes the device only if the device still holds that token and has
    not registered again since the push was sent; otherwise the outcome says why not."""

    device_token: str
    provider: str
    reason: str
    sent_at: int


class SupersedeDevice(Command, frozen=True, kw_only=True, tag="supersede-device/1"):
    """`by_device_id` registered the token this device held since the registration `claim`
    (the event id of that DeviceRegistered). Stale (the device registered again since): a
    no-op."""

    by_device_id: str
    claim: str


class ForgetDevice(Command, frozen=True, kw_only=True, tag="forget-device/1"):
    """Erase the device's personal data (an admin's request, or retention)."""

    reason: str = "requested"


AnyCommand = (
    RegisterDevice
    | UnregisterDevice
    | ExpireRegistration
    | ExpireRegistrations
    | ReportRejectedToken
    | SupersedeDevice
    | ForgetDevice
)


class Outcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Exactly one per command, on `devreg.outcomes`.

    For an `ExpireRegistrations` (many devices): `device_id` is empty, `event_ids` lists
    every device's `RegistrationExpired` in the command's order, and `stale` the devices that
    had nothing expired (no-ops)."""

    command_id: str
    app_id: str
    device_id: str = ""
    accepted: bool
    decided_at: int
    event_ids: tuple[str, ...] = ()
    registration_ids: dict[str, str] = {}
    code: int | None = None
    message: str | None = None
    note: str | None = None
    stale: tuple[str, ...] = ()


_event_encoder = msgspec.json.Encoder(order="sorted")
_event_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)
_command_decoder: msgspec.json.Decoder[AnyCommand] = msgspec.json.Decoder(AnyCommand)
_outcome_decoder = msgspec.json.Decoder(Outcome)


def encode(value: Event | Command | Outcome) -> bytes:
    """Canonical JSON: sorted keys, defaults omitted. The hash is taken over this form."""
    return _event_encoder.encode(value)


def decode_event(data: bytes) -> AnyEvent:
    return _event_decoder.decode(data)


def decode_command(data: bytes) -> AnyCommand:
    return _command_decoder.decode(data)


def decode_outcome(data: bytes) -> Outcome:
    return _outcome_decoder.decode(data)
