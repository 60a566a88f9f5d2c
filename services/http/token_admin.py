"""Admin routes of the token lifecycle (docs/design.md §11, §12), declared in the route table
(services/http/routes.py) with the admin key, on every base:

- `POST tokens/lookup`: which device holds a token (the token index, on the worker that owns
  the token's fingerprint);
- `POST tokens/rejected`: a push provider rejected a token; with `deviceId`, or found through
  the index. Decided by the device's owner, which seals the reported token with the device's
  key (tokens compare by sealed text);
- `POST devices/{device_id}/forget`: erase the device's personal data.

The token travels in a body, never in a URL (URLs end up in logs).
"""

from __future__ import annotations

import aiohttp
import msgspec
from aiohttp import web

from events import ForgetDevice, Outcome, ReportRejectedToken, rules
from services.clock import now_ms
from services.http.access import ADMIN_HEADER, app_of
from services.http.api import Api
from services.http.command_gateway import new_command_id
from services.http.forwarding import FORWARDED, TIMEOUT
from services.http.wire import WireError, json_response
from services.tokens import records
from services.tokens.index_store import IndexStore


class LookupBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    deviceToken: str


class Holder(msgspec.Struct, frozen=True):
    deviceId: str
    registeredAt: int


class RejectedBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`sentAt`: when the push the provider answered was sent (ms since epoch)."""

    deviceToken: str
    provider: str
    reason: str = ""
    sentAt: int = 0
    deviceId: str | None = None


class Decided(msgspec.Struct, frozen=True, omit_defaults=True):
    """The command's outcome: `removed` or `forgotten` when it changed the device, else the
    note says why it was ignored."""

    deviceId: str
    changed: bool
    eventIds: list[str] = []
    note: str | None = None


def _decode(kind: type[msgspec.Struct], raw: bytes) -> msgspec.Struct:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise WireError(rules.INVALID_REQUEST, f"Invalid body: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise WireError(rules.INVALID_REQUEST, f"Malformed JSON body: {exc}") from exc


class TokenAdmin:
    def __init__(self, api: Api, index: IndexStore, index_key: bytes):
        self.api = api
        self._index = index
        self._index_key = index_key

    async def _body(self, request: web.Request) -> bytes:
        if request.content_type != "application/json":
            raise WireError(rules.INVALID_REQUEST, "Content-Type must be application/json")
        return await request.read()

    def _fingerprint(self, app_id: str, token: str) -> str:
        if not token or len(token) > rules.MAX_FIELD_LENGTH:
            raise WireError(rules.LENGTH_EXCEEDED, "Property 'deviceToken' is empty or too long")
        return records.fingerprint(self._index_key, app_id, token)

    async def lookup(self, request: web.Request) -> web.Response:
        app_id = app_of(request)
        raw = await self._body(request)
        body = _decode(LookupBody, raw)
        assert isinstance(body, LookupBody)
        fp = self._fingerprint(app_id, body.deviceToken)
        if forwarded := await self.api.forwarder.to_owner(
            request, app_id, records.routing_id(fp), raw
        ):
            return forwarded
        holder = await self._index.holder(app_id, fp)
        if holder is None:
            raise WireError(rules.UNKNOWN_DEVICE_GET, "No registered device holds this token")
        return json_response(Holder(deviceId=holder.device_id, registeredAt=holder.registered_at))

    async def _holder(self, request: web.Request, app_id: str, token: str) -> str | None:
        """The device that holds the token: from this worker's index if it owns the token's
        fingerprint, else asked of the owner's lookup route."""
        fp = self._fingerprint(app_id, token)
        ownership = self.api.forwarder.ownership
        partition = ownership.partition_of(app_id, records.routing_id(fp))
        owner = ownership.owner(partition)
        if owner == ownership.url:
            holder = await self._index.holder(app_id, fp)
            return holder.device_id if holder else None
        if owner is None:
            raise WireError(rules.PARTITION_MOVING, f"partition {partition} is moving", 503)
        headers = {
            ADMIN_HEADER: request.headers.get(ADMIN_HEADER, ""),
            FORWARDED: ownership.url,
        }
        try:
            async with self.api.forwarder.session().post(
                f"{owner}/admin/{app_id}/tokens/lookup",
                json={"deviceToken": token},
                headers=headers,
                timeout=TIMEOUT,
            ) as answer:
                payload = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WireError(rules.PARTITION_MOVING, "the token index did not answer", 503) from exc
        if answer.status == 200:
            return msgspec.json.decode(payload, type=Holder).deviceId
        if answer.status == 400:
            return None
        raise WireError(rules.PARTITION_MOVING, f"the token index answered {answer.status}", 503)

    async def rejected(self, request: web.Request) -> web.Response:
        app_id = app_of(request)
        raw = await self._body(request)
        body = _decode(RejectedBody, raw)
        assert isinstance(body, RejectedBody)
        self._fingerprint(app_id, body.deviceToken)  # the same limits as a registration's
        device_id = body.deviceId
        if device_id is None and FORWARDED not in request.headers:
            device_id = await self._holder(request, app_id, body.deviceToken)
            if device_id is None:
                note = "ignored: no registered device holds this token"
                return json_response(Decided(deviceId="", changed=False, note=note))
            raw = msgspec.json.encode(msgspec.structs.replace(body, deviceId=device_id))
        if device_id is None:
            raise WireError(rules.INVALID_REQUEST, "Property 'deviceId' is required here")
        command = ReportRejectedToken(
            command_id=new_command_id(),
            app_id=app_id,
            device_id=device_id,
            issued_at=now_ms(),
            device_token=body.deviceToken,
            provider=body.provider,
            reason=body.reason,
            sent_at=body.sentAt,
        )
        if rejection := rules.check(command, now_ms()):
            raise WireError(rejection.code, rejection.message)
        if forwarded := await self.api.forwarder.to_owner(request, app_id, device_id, raw):
            return forwarded
        current = await self.api.keyring.current(app_id, device_id)
        if current is None:
            note = "ignored: the device holds no token"
            return json_response(Decided(deviceId=device_id, changed=False, note=note))
        sealed = self.api.keyring.seal(app_id, device_id, "device_token", body.deviceToken, current)
        outcome = await self.api.submit(msgspec.structs.replace(command, device_token=sealed))
        return self._answer(device_id, outcome)

    async def forget(self, request: web.Request) -> web.Response:
        app_id = app_of(request)
        device_id = request.match_info["device_id"]
        command = ForgetDevice(
            command_id=new_command_id(), app_id=app_id, device_id=device_id, issued_at=now_ms()
        )
        if rejection := rules.check(command, now_ms()):
            raise WireError(rejection.code, rejection.message)
        if forwarded := await self.api.forwarder.to_owner(request, app_id, device_id):
            return forwarded
        return self._answer(device_id, await self.api.submit(command))

    def _answer(self, device_id: str, outcome: Outcome) -> web.Response:
        if not outcome.accepted:
            raise WireError(outcome.code or rules.INVALID_REQUEST, outcome.message or "")
        return json_response(
            Decided(
                deviceId=device_id,
                changed=bool(outcome.event_ids),
                eventIds=list(outcome.event_ids),
                note=outcome.note,
            )
        )
