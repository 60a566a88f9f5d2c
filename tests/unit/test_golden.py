"""Golden files: every event, command and outcome ever written must decode forever.

Each `golden/<tag with / as _>.json` holds the exact bytes `events.encode` produced for a
realistic example when the tag was introduced; `<tag>.<variant>.json` the same when a field
was added to it (`user-token-fingerprint`: session tokens became fingerprints). If one of
these tests fails, a change broke the wire format: evolve additively (new fields with
defaults) or add a new tag and an upcaster, never edit a golden file to make the test pass.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from events import (
    EVENT_TYPES,
    AnyCommand,
    Command,
    DeviceRegistered,
    Event,
    ExpireRegistrations,
    Outcome,
    RegistrationExpired,
    decode_command,
    decode_event,
    decode_outcome,
    encode,
)
from events.identity import event_hash, expiry_event_id

GOLDEN = Path(__file__).parent / "golden"
FUTURE_SUFFIX = ".future-field.json"

Decoder = Callable[[bytes], Event | Command | Outcome]
COMMAND_TYPES: tuple[type[Command], ...] = typing.get_args(AnyCommand)
DECODERS: dict[type[msgspec.Struct], Decoder] = {
    **{cls: decode_event for cls in EVENT_TYPES},
    **{cls: decode_command for cls in COMMAND_TYPES},
    Outcome: decode_outcome,
}


def golden_name(cls: type[msgspec.Struct]) -> str:
    tag = cls.__struct_config__.tag
    return f"{tag.replace('/', '_')}.json" if isinstance(tag, str) else "outcome.json"


CASES = {golden_name(cls): cls for cls in DECODERS}
EXACT_FILES = sorted(p.name for p in GOLDEN.glob("*.json") if not p.name.endswith(FUTURE_SUFFIX))


def case_of(name: str) -> type[msgspec.Struct]:
    """The type of a golden file, a variant (`<tag>.<variant>.json`) included."""
    return CASES[name.split(".", 1)[0] + ".json"]


def test_given_the_golden_folder_then_every_file_belongs_to_a_known_type() -> None:
    # Then: no orphan file silently escapes the byte-identical checks below.
    assert {name.split(".", 1)[0] + ".json" for name in EXACT_FILES} <= set(CASES)


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.__name__)
def test_given_an_event_type_then_it_has_a_golden_file(cls: type[msgspec.Struct]) -> None:
    assert (GOLDEN / golden_name(cls)).is_file(), f"add a golden file for {cls.__name__}"


@pytest.mark.parametrize("cls", [*COMMAND_TYPES, Outcome], ids=golden_name)
def test_given_a_command_or_outcome_type_then_it_has_a_golden_file(
    cls: type[msgspec.Struct],
) -> None:
    assert (GOLDEN / golden_name(cls)).is_file(), f"add a golden file for {cls.__name__}"


@pytest.mark.parametrize("name", EXACT_FILES)
def test_given_a_golden_file_when_decoded_then_right_type_and_byte_identical_reencoding(
    name: str,
) -> None:
    # Given
    data = (GOLDEN / name).read_bytes()
    cls = case_of(name)

    # When
    decoded = DECODERS[cls](data)

    # Then
    assert type(decoded) is cls
    assert encode(decoded) == data


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.__name__)
def test_given_a_golden_event_when_decoded_then_its_stored_hash_verifies(
    cls: type[msgspec.Struct],
) -> None:
    event = decode_event((GOLDEN / golden_name(cls)).read_bytes())

    assert event.hash
    assert event_hash(event) == event.hash


def test_given_a_golden_event_chain_then_prev_hashes_link_the_device_events() -> None:
    # Given: the golden device events were decided in this order for one device.
    names = [
        "device-registered_1.json",
        "device-unregistered_1.json",
        "registration-expired_1.json",
        "token-rejected_1.json",
        "device-superseded_1.json",
        "device-forgotten_1.json",
    ]
    chain = [decode_event((GOLDEN / name).read_bytes()) for name in names]

    # Then
    assert [event.version for event in chain] == [1, 2, 3, 4, 5, 6]
    assert [event.prev_hash for event in chain] == ["", *(e.hash for e in chain[:-1])]


def test_given_a_newer_event_with_an_unknown_field_when_decoded_then_the_field_is_ignored() -> None:
    # Given: a DeviceRegistered as a newer writer emits it, with a field this schema lacks.
    data = (GOLDEN / f"device-registered_1{FUTURE_SUFFIX}").read_bytes()
    known = decode_event((GOLDEN / "device-registered_1.json").read_bytes())
    assert b'"locale":"de-DE"' in data

    # When
    decoded = decode_event(data)

    # Then: it decodes, and apart from the writer's hash (taken over its own, larger,
    # canonical form) it is the very event the current schema knows.
    assert isinstance(decoded, DeviceRegistered)
    assert not hasattr(decoded, "locale")
    assert msgspec.structs.replace(decoded, hash=known.hash) == known


def test_given_the_golden_events_before_and_since_fingerprints_then_both_decode_and_verify() -> (
    None
):
    # Given the device events of both eras: the raw session token, then only its fingerprint
    old = decode_event((GOLDEN / "device-registered_1.json").read_bytes())
    variant = ".user-token-fingerprint.json"
    registered = decode_event((GOLDEN / f"device-registered_1{variant}").read_bytes())
    unregistered = decode_event((GOLDEN / f"device-unregistered_1{variant}").read_bytes())
    command = decode_command((GOLDEN / f"register-device_1{variant}").read_bytes())

    # Then the old one keeps its token (redacted on output), the new ones carry none, their
    # hashes verify and chain, and the command carries the fingerprint its events copied
    assert isinstance(old, DeviceRegistered)
    assert old.user_token is not None
    assert old.user_token_fingerprint is None
    for event in (registered, unregistered):
        assert getattr(event, "user_token", None) is None
        assert event_hash(event) == event.hash
    assert unregistered.prev_hash == registered.hash
    fingerprint = getattr(registered, "user_token_fingerprint", None)
    assert fingerprint == "7f3a9c21:skRd223UGS4h3AGIEx7Dqg"
    assert command.user_token is None
    assert command.user_token_fingerprint == fingerprint


def test_given_the_golden_expiry_of_many_devices_then_each_event_id_names_the_device_expiry() -> (
    None
):
    # Given the command of many devices, the outcome and the event decided from it
    command = decode_command((GOLDEN / "expire-registrations_1.json").read_bytes())
    outcome = decode_outcome((GOLDEN / "outcome.expire-registrations.json").read_bytes())
    event = decode_event((GOLDEN / "registration-expired_1.expire-registrations.json").read_bytes())

    # Then the event's id comes from the device's expiry (never from the command), and the
    # outcome lists it, with the other device as stale
    assert isinstance(command, ExpireRegistrations)
    assert isinstance(event, RegistrationExpired)
    assert event.event_id == expiry_event_id(
        event.app_id, event.device_id, event.expiration, event.version
    )
    assert outcome.event_ids == (event.event_id,)
    assert {*outcome.stale, event.device_id} == {d.device_id for d in command.devices}
