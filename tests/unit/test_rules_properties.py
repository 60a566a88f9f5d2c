"""Property tests of the validation rules shared by HTTP and Kafka commands."""

from __future__ import annotations

import unicodedata

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import RegisterDevice, rules
from services.http import wire

NOW = 1_800_000_000_000
text = st.text(min_size=1, max_size=700)
# Device ids a URL path segment can name (no '/', no control character).
device_ids = st.text(
    st.characters(exclude_categories=["Cc", "Cs"], exclude_characters="/"),
    min_size=1,
    max_size=700,
)


def nameable(value: str, forbidden: str) -> bool:
    """Non-empty, none of `forbidden`, no control character (C0, DEL, C1) nor surrogate: the
    rule restated with the standard library, not with the code under test."""
    return bool(value) and not any(
        c in forbidden or unicodedata.category(c) in ("Cc", "Cs") for c in value
    )


os_names = st.sampled_from(["ios", "IOS", "Android", "wp", "OsX"])


def register(**fields: object) -> RegisterDevice:
    base: dict[str, object] = {
        "command_id": "c",
        "app_id": "a",
        "device_id": "d",
        "device_token": "t",
        "os": "IOS",
        "os_version": "1",
    }
    base.update(fields)
    return RegisterDevice(**base)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(token=text, device=device_ids, version=st.text(max_size=700), os_name=os_names)
def test_given_any_lengths_then_8000_exactly_when_a_value_exceeds_500_characters(
    token: str, device: str, version: str, os_name: str
) -> None:
    rejection = rules.check(
        register(device_token=token, device_id=device, os_version=version, os=os_name), NOW
    )
    too_long = {
        name: value
        for name, value in (("deviceId", device), ("deviceToken", token), ("osVersion", version))
        if len(value) > rules.MAX_FIELD_LENGTH
    }
    if too_long:
        assert rejection is not None
        assert rejection.code == rules.LENGTH_EXCEEDED
        assert any(f"'{name}'" in rejection.message for name in too_long)
    else:
        assert rejection is None


@settings(max_examples=300, deadline=None)
@given(channels=st.lists(st.text(max_size=600), max_size=rules.MAX_CHANNELS + 5))
def test_given_any_channels_then_accepted_only_when_every_name_is_valid(
    channels: list[str],
) -> None:
    rejection = rules.check(register(channels=tuple(channels)), NOW)
    valid = len(channels) <= rules.MAX_CHANNELS and all(
        nameable(c, "/,") and len(c) <= rules.MAX_FIELD_LENGTH for c in channels
    )
    assert (rejection is None) == valid
    if rejection is not None:
        assert rejection.code in (rules.INVALID_REGISTRATION, rules.LENGTH_EXCEEDED)


@settings(max_examples=300, deadline=None)
@given(
    channel=st.one_of(
        st.text(max_size=30),
        st.text(st.characters(codec="ascii"), max_size=10),
        st.sampled_from(["a,b", ",", "a\x00", "\x85", "\x7f", "x\u2028", "caf\u00e9 ?#%41"]),
    )
)
def test_given_any_channel_name_then_refused_exactly_for_empty_slash_comma_or_control(
    channel: str,
) -> None:
    rejection = rules.check(register(channels=(channel,)), NOW)
    if nameable(channel, "/,") and len(channel) <= rules.MAX_FIELD_LENGTH:
        assert rejection is None
    else:
        assert rejection is not None
        assert rejection.code in (rules.INVALID_REGISTRATION, rules.LENGTH_EXCEEDED)
        assert repr(channel)[:40] in rejection.message or "'channels'" in rejection.message


@settings(max_examples=300, deadline=None)
@given(device=st.text(min_size=1, max_size=40))
def test_given_any_device_id_then_registration_refuses_slashes_and_control_characters(
    device: str,
) -> None:
    rejection = rules.check(register(device_id=device), NOW)
    if nameable(device, "/"):
        assert rejection is None
    else:
        assert rejection is not None
        assert rejection.code == rules.INVALID_REGISTRATION
        assert "'deviceId'" in rejection.message


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.integers(-(10**20), 10**20), st.floats(allow_nan=True)))
def test_given_any_expiration_then_accepted_only_in_the_representable_future(
    value: float,
) -> None:
    ms = rules.expiration_to_ms(value)
    rejection = rules.check(register(expiration=ms), NOW)
    if rejection is None:
        assert ms is not None
        assert NOW < ms <= rules.MAX_TIME_MS
    else:
        assert rejection.code == rules.INVALID_EXPIRATION


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(sorted(wire.RegisterBody.__struct_fields__)),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=20),
            st.lists(st.text(max_size=5), max_size=3),
            st.floats(allow_nan=False),
        ),
    )
)
def test_given_any_json_body_then_decoded_or_refused_with_5002_never_an_exception(
    body: dict[str, object],
) -> None:
    def is_(value: object, *kinds: type) -> bool:
        return isinstance(value, kinds) and not isinstance(value, bool)

    well_formed = (
        all(is_(body.get(k), str) for k in ("deviceToken", "deviceId", "os"))
        and is_(body.get("osVersion", ""), str, int, float)
        and (body.get("channels") is None or is_(body.get("channels"), list))
        and (body.get("expiration") is None or is_(body.get("expiration"), int, float))
    )
    raw = msgspec.json.encode(body)
    if well_formed:
        decoded = wire.decode_register(raw)
        assert decoded.deviceId == body["deviceId"]
        return
    with pytest.raises(wire.WireError) as refused:
        wire.decode_register(raw)
    assert refused.value.code == rules.INVALID_REGISTRATION
    assert refused.value.message
