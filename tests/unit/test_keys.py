"""Data keys and sealing (services/keys/), and the token lifecycle settings: pure, no Kafka."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from events import sealed
from projections.positions import Record
from services.config import ConfigError, load_settings
from services.keys import cipher, records
from services.keys.kek import load_kek

CONTEXT = cipher.context("app", "device", "device_token")


def test_given_one_key_then_sealing_is_deterministic_and_opens_only_in_its_context() -> None:
    # Given
    key, kid = cipher.new_key(), cipher.new_key_id(1_750_000_000_000)

    # When
    first = cipher.seal(kid, key, CONTEXT, "push-token")
    second = cipher.seal(kid, key, CONTEXT, "push-token")

    # Then: the same text (decide() compares tokens by it), readable as a sealed value ...
    assert first == second
    assert sealed.well_formed(first)
    assert sealed.key_id(first) == kid
    assert sealed.key_created_at(kid) == 1_750_000_000_000
    assert b"push-token" not in first.encode()
    assert cipher.open_sealed(first, key, CONTEXT) == "push-token"
    # ... which another key, or another device's context, cannot open
    assert cipher.open_sealed(first, cipher.new_key(), CONTEXT) is None
    other = cipher.context("app", "other-device", "device_token")
    assert cipher.open_sealed(first, key, other) is None
    assert cipher.seal(kid, key, CONTEXT, "another-token") != first


def test_given_a_wrapped_key_then_only_the_same_kek_and_slot_unwrap_it() -> None:
    kek, key = cipher.new_key(), cipher.new_key()
    slot = records.record_key(("app", "device", "k"))

    wrapped = cipher.wrap(kek, key, slot)

    assert cipher.unwrap(kek, wrapped, slot) == key
    with pytest.raises(cipher.KeyUnreadable):
        cipher.unwrap(cipher.new_key(), wrapped, slot)
    with pytest.raises(cipher.KeyUnreadable):
        cipher.unwrap(kek, wrapped, records.record_key(("app", "other", "k")))


def _record(offset: int, slot: tuple[str, str, str], wrapped: bytes | None) -> Record:
    value = None if wrapped is None else records.record_value(wrapped)
    return Record("devreg.keys", 1, offset, 0, records.record_key(slot), value)


def test_given_keys_and_a_tombstone_when_folded_then_the_erased_key_is_gone() -> None:
    a, b = ("app", "d1", "k1"), ("app", "d2", "k2")

    live, erased = records.fold([_record(0, a, b"wa"), _record(1, b, b"wb"), _record(2, a, None)])

    assert set(live) == {b}
    assert live[b].wrapped == b"wb"
    assert erased == {a}


def test_given_no_kek_then_one_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    settings = load_settings({"DEVREG_DATA_DIR": str(tmp_path)})

    created = load_kek(settings)

    mode = stat.S_IMODE(settings.kek_path.stat().st_mode)
    assert mode == 0o600
    assert load_kek(settings) == created  # read back, not made again
    with pytest.raises(ConfigError, match="DEVREG_KEK"):
        load_kek(load_settings({"DEVREG_KEK": "too-short"}))


def test_given_token_lifecycle_settings_then_they_are_read_and_checked() -> None:
    apps = "app-a:rest-a:admin-key-a-0123456789,app-b:rest-b"
    settings = load_settings(
        {
            "DEVREG_APPS": apps,
            "DEVREG_ALLOW_SHARED_TOKENS": "app-b",
            "DEVREG_RETENTION_DAYS": "app-a:30,app-b:0.5",
        }
    )

    assert settings.one_device_per_token == frozenset({"app-a"})  # on by default
    assert settings.retention_days == {"app-a": 30.0, "app-b": 0.5}
    with pytest.raises(ConfigError, match="DEVREG_RETENTION_DAYS"):
        load_settings({"DEVREG_APPS": apps, "DEVREG_RETENTION_DAYS": "app-c:3"})
    with pytest.raises(ConfigError, match="DEVREG_ALLOW_SHARED_TOKENS"):
        load_settings({"DEVREG_APPS": apps, "DEVREG_ALLOW_SHARED_TOKENS": "nope"})
    assert load_settings({"DEVREG_ALLOW_SHARED_TOKENS": "*"}).one_device_per_token == frozenset()
