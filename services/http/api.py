"""The HTTP API: Backendless device registration routes, plus health, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST

from events import (
    AnyCommand,
    Outcome,
    RegisterDevice,
    UnregisterDevice,
    decode_event,
    encode,
    rules,
    sealed,
)
from events.user_tokens import TokenKeys
from projections.store import ProjectionStore
from services.clock import now_ms
from services.http import params, wire
from services.http.access import app_of
from services.http.admission import Admission
from services.http.command_gateway import (
    CommandGateway,
    NotVisibleInTime,
    Unavailable,
    new_command_id,
)
from services.http.forwarding import Forwarder
from services.http.wire import WireError, json_response
from services.keys.keyring import Keyring
from services.keys.personal import PERSONAL_FIELDS, seal_personal
from services.metrics import Metrics
from services.stream.live_tail import LiveTail

log = logging.getLogger(__name__)
# After answering before a body was read whole (408, 413, 401), aiohttp reads and discards
# what the client still sends for this long, so the client can read the answer, then closes.
# Its default (10 s) would let a stalled client hold the connection that long on top.
LINGER_S = 2.0


@dataclass
class Api:
    gateway: CommandGateway
    projection: ProjectionStore
    metrics: Metrics
    ready: Callable[[], bool]
    broker_reachable: Callable[[], bool]
    forwarder: Forwarder
    lag: Callable[[], dict[int, int]]  # events partition -> events emitted, not yet applied
    body_timeout_s: float  # a body not received in full by then is refused with a 408
    write_timeout_s: float  # a streamed answer the client stopped reading is dropped after it
    tokens: TokenKeys  # session tokens become fingerprints here, before anything is sent
    live_tail: LiveTail  # the events as they happen, for /admin/{app}/live
    keyring: Keyring  # seals personal values before a command leaves, opens them for answers
    admission: Admission  # refuses a write at once when too many wait already

    async def opened_token(self, app_id: str, device_id: str, text: str) -> str:
        return await self.keyring.open(app_id, device_id, "device_token", text)

    async def opened_tokens(self, app_id: str, tokens: Sequence[tuple[str, str]]) -> list[str]:
        """Each (device id, sealed token) opened, as `opened_token` does, for a page."""
        return await self.keyring.open_all(app_id, "device_token", tokens)

    async def opened_event(self, raw: bytes) -> bytes:
        """An event's JSON to show: its sealed values opened (ERASED where the key is gone).
        Its `hash` is of the sealed text the log holds: check chains before opening."""
        if sealed.PREFIX.encode() not in raw:
            return raw
        event = decode_event(raw)
        device_id = getattr(event, "device_id", "")
        changes = {}
        for name, label in PERSONAL_FIELDS.items():
            value = getattr(event, name, None)
            if isinstance(value, str) and sealed.is_sealed(value):
                changes[name] = await self.keyring.open(event.app_id, device_id, label, value)
        return encode(msgspec.structs.replace(event, **changes)) if changes else raw

    def user(self, app_id: str, request: web.Request) -> str | None:
        """The fingerprint of the request's `user-token` (None without one): nothing devreg
        sends or stores holds the raw token (a request forwarded to the device's owner
        carries the header to it, over the workers' own network; docs/security.md)."""
        token = request.headers.get("user-token")
        return self.tokens.fingerprint(app_id, token) if token else None

    async def sealed(self, command: AnyCommand) -> AnyCommand:
        """`command` with its personal values sealed; a device's first key is made durable
        on Kafka first, so a broker outage answers 503 (5901) here as in `submit`."""
        if not self.broker_reachable():
            raise WireError(rules.KAFKA_UNAVAILABLE, "Kafka is unreachable; retry later", 503)
        try:
            # A timer, not a `wait_for`: that would run the sealing in a task of its own, one
            # more task per POST (services/http/command_gateway.py says the same of submit).
            async with asyncio.timeout(self.gateway.timeout_s):
                return await seal_personal(self.keyring, command)
        except (KafkaError, TimeoutError) as exc:
            message = f"Kafka did not acknowledge the device's key: {exc!r}"
            raise WireError(rules.KAFKA_UNAVAILABLE, message, 503) from exc

    async def submit(self, command: AnyCommand) -> Outcome:
        if not self.broker_reachable():
            # Fail fast while the broker is known to be down, rather than hang every client.
            raise WireError(rules.KAFKA_UNAVAILABLE, "Kafka is unreachable; retry later", 503)
        try:
            with self.admission.write():
                return await self.gateway.submit(command)
        except Unavailable as exc:
            raise WireError(rules.KAFKA_UNAVAILABLE, str(exc), 503) from exc
        except NotVisibleInTime as exc:
            raise WireError(rules.NOT_VISIBLE_IN_TIME, str(exc), 503) from exc

    async def register(self, request: web.Request) -> web.Response:
        app_id = app_of(request)
        if request.content_type != "application/json":
            raise WireError(rules.INVALID_REGISTRATION, "Content-Type must be application/json")
        try:
            # A client that never finishes its body must not hold the handler forever.
            async with asyncio.timeout(self.body_timeout_s):
                raw = await request.read()
        except TimeoutError:
            raise WireError(
                rules.INVALID_REQUEST, "Request body not received in time", 408
            ) from None
        body = wire.decode_register(raw)
        issued_at = now_ms()
        command = RegisterDevice(
            command_id=new_command_id(),
            app_id=app_id,
            device_id=body.deviceId,
            issued_at=issued_at,
            user_token_fingerprint=self.user(app_id, request),
            device_token=body.deviceToken,
            os=body.os,
            os_version=wire.os_version_text(body.osVersion),
            channels=tuple(body.channels or ()),
            expiration=rules.expiration_to_ms(body.expiration),
        )
        # Same rules the processor applies, checked here first so a bad request costs nothing.
        if rejection := rules.check(command, issued_at):
            raise WireError(rejection.code, rejection.message)
        if forwarded := await self.forwarder.to_owner(request, app_id, body.deviceId, raw):
            return forwarded  # the owner decides, so its read-your-writes holds
        # Sealed here, on the owner, which holds the device's key: no raw token is published.
        outcome = await self.submit(await self.sealed(command))
        if not outcome.accepted:
            raise WireError(outcome.code or rules.INVALID_REGISTRATION, outcome.message or "")
        registration_id = wire.registration_id_text(outcome.registration_ids)
        return json_response(wire.RegisterResponse(registrationId=registration_id))

    async def retrieve(self, request: web.Request) -> web.Response:
        app_id = app_of(request)
        device_id = params.DEVICE_ID.read(request)
        if forwarded := await self.forwarder.to_owner(request, app_id, device_id):
            return forwarded
        device = await self.projection.get_device(app_id, device_id, now_ms())
        if device is None:
            message = f"Unable to retrieve device registration - unknown device ID {device_id!r}"
            raise WireError(rules.UNKNOWN_DEVICE_GET, message)
        token = await self.opened_token(app_id, device_id, device.device_token)
        return json_response(wire.device_body(msgspec.structs.replace(device, device_token=token)))

    async def unregister(self, request: web.Request) -> web.Response:
        app_id = app_of(request)
        command = UnregisterDevice(
            command_id=new_command_id(),
            app_id=app_id,
            device_id=params.DEVICE_ID.read(request),
            issued_at=now_ms(),
            user_token_fingerprint=self.user(app_id, request),
            channels=params.CHANNELS.read(request),
        )
        if rejection := rules.check(command, now_ms()):
            raise WireError(rejection.code, rejection.message)
        if forwarded := await self.forwarder.to_owner(request, app_id, command.device_id):
            return forwarded
        outcome = await self.submit(await self.sealed(command))
        if not outcome.accepted:
            raise WireError(outcome.code or rules.UNKNOWN_DEVICE_DELETE, outcome.message or "")
        return json_response(wire.UnregisterResponse(result=True))

    async def empty(self, request: web.Request) -> web.Response:
        """`/info` (SDK init) and `pushtemplates` (after register): nothing to configure."""
        return json_response({})

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        ready = self.ready()
        ownership = self.forwarder.ownership
        body = {
            "ready": ready,
            "partitions": ownership.owned(),
            "workers": sorted(set(ownership.owners.values())),
        }
        return json_response(body, 200 if ready else 503)

    async def metrics_text(self, request: web.Request) -> web.Response:
        self.metrics.set("devreg_expirations_pending", await self.projection.pending_expirations())
        self.metrics.set("devreg_http_writes_in_flight", self.admission.in_flight)
        for partition, lag in self.lag().items():
            self.metrics.set("devreg_projection_lag_events", lag, partition=str(partition))
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
