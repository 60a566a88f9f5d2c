"""Property tests: every event, command and outcome round-trips through the wire codec."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from events import (
    AnyCommand,
    AnyEvent,
    ChannelCreated,
    DeviceRegistered,
    DeviceUnregistered,
    ExpireRegistration,
    Outcome,
    RegisterDevice,
    RegistrationExpired,
    UnregisterDevice,
    decode_command,
    decode_event,
    decode_outcome,
    encode,
)
from events.identity import event_hash

# Full unicode (astral planes, combining marks, NUL, quotes...), minus lone surrogates, which
# no UTF-8 JSON document can carry.
text = st.text(max_size=12)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
names = st.lists(text, max_size=4).map(tuple)
maybe_text = st.none() | text
maybe_int = st.none() | int64

envelope = {
    "event_id": text,
    "app_id": text,
    "version": int64,
    "occurred_at": int64,
    "command_id": text,
    "prev_hash": text,
    "hash": text,
}
any_event = st.one_of(
    st.builds(
        DeviceRegistered,
        **envelope,
        device_id=text,
        device_token=text,
        os=text,
        os_version=text,
        channels=names,
        registration_ids=st.dictionaries(text, text, max_size=4),
        expiration=maybe_int,
        user_token=maybe_text,
    ),
    st.builds(ChannelCreated, **envelope, channel=text),
    st.builds(
        DeviceUnregistered, **envelope, device_id=text, channels=names, user_token=maybe_text
    ),
    st.builds(RegistrationExpired, **envelope, device_id=text, channels=names, expiration=int64),
)

command_envelope = {
    "command_id": text,
    "app_id": text,
    "device_id": text,
    "issued_at": maybe_int,
    "user_token": maybe_text,
}
any_command = st.one_of(
    st.builds(
        RegisterDevice,
        **command_envelope,
        device_token=text,
        os=text,
        os_version=text,
        channels=names,
        expiration=maybe_int,
    ),
    st.builds(UnregisterDevice, **command_envelope, channels=st.none() | names),
    st.builds(ExpireRegistration, **command_envelope, expiration=int64),
)

any_outcome = st.builds(
    Outcome,
    command_id=text,
    app_id=text,
    device_id=text,
    accepted=st.booleans(),
    decided_at=int64,
    event_ids=names,
    registration_ids=st.dictionaries(text, text, max_size=4),
    code=maybe_int,
    message=maybe_text,
    note=maybe_text,
)


@settings(max_examples=300, deadline=None)
@given(any_event)
def test_given_any_event_when_encoded_and_decoded_then_it_is_unchanged(event: AnyEvent) -> None:
    data = encode(event)

    decoded = decode_event(data)

    assert type(decoded) is type(event)
    assert decoded == event
    assert encode(decoded) == data
    assert event_hash(decoded) == event_hash(event)


@settings(max_examples=200, deadline=None)
@given(any_command)
def test_given_any_command_when_encoded_and_decoded_then_it_is_unchanged(
    command: AnyCommand,
) -> None:
    data = encode(command)

    decoded = decode_command(data)

    assert type(decoded) is type(command)
    assert decoded == command
    assert encode(decoded) == data


@settings(max_examples=200, deadline=None)
@given(any_outcome)
def test_given_any_outcome_when_encoded_and_decoded_then_it_is_unchanged(outcome: Outcome) -> None:
    data = encode(outcome)

    decoded = decode_outcome(data)

    assert decoded == outcome
    assert encode(decoded) == data
