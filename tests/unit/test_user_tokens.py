"""Session tokens become keyed fingerprints (events/user_tokens.py): deterministic, bound to
the app, named by their key, checkable after a rotation; a raw token never reaches an event,
and an old event's token is redacted when shown."""

from __future__ import annotations

import base64

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events import DeviceRegistered, RegisterDevice, decode_event, encode
from events.identity import event_hash
from events.user_tokens import (
    REDACTED,
    TokenKeys,
    redacted,
    redacted_json,
    without_raw_token,
)
from tests.unit.domain import Registry, register

K1 = TokenKeys({"k1": bytes(range(32))})
K2 = TokenKeys({"k2": bytes(range(1, 33)), "k1": bytes(range(32))})  # rotated: k2 current


def test_given_the_pinned_key_then_the_fingerprint_never_changes() -> None:
    # The golden events (tests/unit/golden) hold this fingerprint: the algorithm is fixed
    keys = TokenKeys({"7f3a9c21": bytes(range(32))})
    token = "8B2F9D1E-4C7A-4E3B-A1D5-6F0E2C9B7A43"
    app = "5C1B8E4A-7F2D-4C3B-9A6E-2D8F1B0C7E91"
    assert keys.fingerprint(app, token) == "7f3a9c21:skRd223UGS4h3AGIEx7Dqg"


@given(app=st.text(max_size=20), token=st.text(min_size=1, max_size=200))
def test_given_any_token_then_a_short_fingerprint_bound_to_its_app_and_key(
    app: str, token: str
) -> None:
    fingerprint = K1.fingerprint(app, token)
    kid, _, mac = fingerprint.partition(":")
    assert (kid, len(mac)) == ("k1", 22)
    assert token not in mac
    assert fingerprint == K1.fingerprint(app, token)  # deterministic: decided again, same
    assert K1.fingerprint(app + "x", token) != fingerprint
    assert K1.matches(app, token, fingerprint)
    # After a rotation new fingerprints use the new key, old ones still check
    assert K2.fingerprint(app, token).startswith("k2:")
    assert K2.matches(app, token, fingerprint)
    assert not TokenKeys({"k2": bytes(32)}).matches(app, token, fingerprint)


def test_given_key_specs_then_parsed_or_refused() -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    parsed = TokenKeys.parse(f"new1:{base64.b64encode(bytes(32)).decode()}, k1:{key}")
    assert parsed.current == "new1"
    assert parsed.fingerprint("a", "t", "k1") == K1.fingerprint("a", "t")
    assert key not in repr(parsed)
    for bad in ("", "k1", f"k1:{key[:20]}", f"k-1:{key}", f"k1:{key},k1:{key}"):
        with pytest.raises(ValueError, match="entry") as error:
            TokenKeys.parse(bad)
        assert key not in str(error.value)


def test_given_a_command_with_a_raw_token_then_only_the_fingerprint_is_decided_on() -> None:
    command = register(user_token="session-1")
    cleaned = without_raw_token(command, K1)
    assert cleaned.user_token is None
    assert cleaned.user_token_fingerprint == K1.fingerprint(command.app_id, "session-1")
    # And the event decided from it holds nothing of the token
    [event] = [e for e in Registry().accepted(cleaned) if isinstance(e, DeviceRegistered)]
    assert b"session-1" not in encode(event)
    # A command without one is left as it is; an empty one leaves no fingerprint
    plain = register()
    assert without_raw_token(plain, K1) is plain
    assert without_raw_token(register(user_token=""), K1).user_token_fingerprint is None
    with pytest.raises(ValueError, match="no fingerprint key"):
        without_raw_token(command, None)


def test_given_an_old_event_with_a_raw_token_then_shown_redacted_with_its_hash() -> None:
    old = msgspec.structs.replace(
        Registry().accepted(register())[-1], user_token="session-1", hash=""
    )
    assert isinstance(old, DeviceRegistered)
    sealed = msgspec.structs.replace(old, hash=event_hash(old))
    shown = redacted(sealed)
    assert shown.user_token == REDACTED
    assert shown.hash == sealed.hash  # the hash of the original, checked on the log
    raw = encode(sealed)
    assert decode_event(redacted_json(raw)) == shown
    assert b"session-1" not in redacted_json(raw)
    # An event since fingerprints is shown as it is, byte for byte
    new = encode(Registry().accepted(register())[-1])
    assert redacted_json(new) is new


def test_given_register_device_commands_then_the_fingerprint_field_round_trips() -> None:
    command = msgspec.structs.replace(
        RegisterDevice(
            command_id="c", app_id="a", device_id="d", device_token="t", os="IOS", os_version=""
        ),
        user_token_fingerprint="k1:x",
    )
    assert msgspec.json.decode(encode(command), type=RegisterDevice) == command
