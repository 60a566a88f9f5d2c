"""The keyring's opened tokens (services/keys/opened.py): a token read again is not opened
again, and nothing opened outlives the key that opened it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import RegisterDevice, sealed
from services.keys import cipher, personal
from services.log.broker import EmbeddedBroker
from tests.integration.keyring_support import (
    APP,
    TOKEN,
    Ring,
    open_ring,
)


class CountedOpenings:
    """Counts the AES-GCM openings the keyring makes (cipher.open_sealed)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.count = 0
        real = cipher.open_sealed

        def counted(text: str, key: bytes, aad: bytes) -> str | None:
            self.count += 1
            return real(text, key, aad)

        monkeypatch.setattr(cipher, "open_sealed", counted)


@pytest.fixture
async def ring(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[Ring]:
    async with open_ring(broker, tmp_path) as opened:
        yield opened


async def sealed_tokens(ring: Ring, devices: list[str]) -> list[tuple[str, str]]:
    """(device id, sealed token) for each device, sealed with its key (made if new)."""
    keys = await ring.keyring.ensure_all([(APP, d) for d in devices])
    return [
        (d, ring.keyring.seal(APP, d, TOKEN, f"push-{d}", key))
        for d, key in zip(devices, keys, strict=True)
    ]


async def test_given_tokens_opened_once_then_reading_them_again_opens_none(
    ring: Ring, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a page of tokens, opened once
    page = await sealed_tokens(ring, [f"page{n}" for n in range(100)])
    openings = CountedOpenings(monkeypatch)
    expected = [f"push-{d}" for d, _ in page]
    assert await ring.keyring.open_all(APP, TOKEN, page) == expected
    assert openings.count == 100

    # When the page and one of its tokens are read again
    again = await ring.keyring.open_all(APP, TOKEN, page)
    device, text = page[7]
    one = await ring.keyring.open(APP, device, TOKEN, text)

    # Then they are what they were, and nothing was opened again
    assert (again, one) == (expected, "push-page7")
    assert openings.count == 100
    # but a text that is not the one opened (tampered with) is opened, and fails
    device, text = page[3]
    tampered = text[:-2] + ("AA" if not text.endswith("AA") else "BB")
    assert await ring.keyring.open(APP, device, TOKEN, tampered) == sealed.ERASED
    assert openings.count == 101


async def test_given_tokens_opened_then_their_device_erased_then_they_open_erased(
    ring: Ring,
) -> None:
    # Given the tokens of a page opened (remembered)
    page = await sealed_tokens(ring, ["kept", "forgotten"])
    assert await ring.keyring.open_all(APP, TOKEN, page) == ["push-kept", "push-forgotten"]

    # When one device is erased
    assert await ring.keyring.erase([(APP, "forgotten")]) == 1

    # Then its token is erased wherever it is read, and the other one is not
    assert await ring.keyring.open_all(APP, TOKEN, page) == ["push-kept", sealed.ERASED]
    device, text = page[1]
    assert await ring.keyring.open(APP, device, TOKEN, text) == sealed.ERASED


async def test_given_a_token_read_while_its_erasure_is_under_way_then_it_is_erased_after(
    ring: Ring,
) -> None:
    # Given a device's token, and its erasure held at the keys topic (its tombstones not
    # acknowledged yet: the key is still in the key store)
    [(device, text)] = await sealed_tokens(ring, ["racing"])
    kid = sealed.key_id(text)
    assert kid is not None
    await ring.gate.close()
    ring.gate.arrived.clear()  # the key's creation passed the gate already
    erasing = asyncio.ensure_future(ring.keyring.erase([(APP, device)]))
    await asyncio.wait_for(ring.gate.arrived.wait(), 10.0)

    # When a reader opens the token meanwhile (the store still holds its key)
    assert await ring.keyring.open(APP, device, TOKEN, text) == f"push-{device}"

    # Then once the erasure is done, neither the token nor the key is served from memory
    ring.gate.open()
    assert await asyncio.wait_for(erasing, 10.0) == 1
    assert await ring.keyring.open(APP, device, TOKEN, text) == sealed.ERASED
    assert await ring.keyring.key(APP, device, kid) is None
    assert await ring.keyring.current(APP, device) is None


def _registration(device: str, token: str) -> RegisterDevice:
    return RegisterDevice(
        command_id=f"cmd-{device}",
        app_id=APP,
        device_id=device,
        device_token=token,
        os="IOS",
        os_version="17",
        user_token_fingerprint=f"fingerprint-{device}",
    )


async def test_given_a_registration_sealed_then_reading_its_token_opens_nothing(
    ring: Ring, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given registrations sealed as the HTTP edge and the processor seal them (the fingerprint
    # after the token, so that it could have taken the device's one remembered value)
    devices = [f"fresh{n}" for n in range(20)]
    keys = await ring.keyring.ensure_all([(APP, d) for d in devices])
    openings = CountedOpenings(monkeypatch)
    commands = [
        personal.seal_command(ring.keyring, _registration(d, f"push-{d}"), key)
        for d, key in zip(devices, keys, strict=True)
    ]

    # When their tokens are read, as a GET and a page read them
    one = await ring.keyring.open(APP, devices[0], TOKEN, commands[0].device_token)
    page = await ring.keyring.open_all(
        APP, TOKEN, [(c.device_id, c.device_token) for c in commands]
    )

    # Then they read right, and not one was opened
    assert one == "push-fresh0"
    assert page == [f"push-{d}" for d in devices]
    assert openings.count == 0
    # A token sealed for another purpose (a reported token) is not remembered
    other = ring.keyring.seal(APP, devices[1], TOKEN, "reported", keys[1])
    assert await ring.keyring.open(APP, devices[1], TOKEN, other) == "reported"
    assert openings.count == 1


async def test_given_a_key_erased_before_a_token_is_sealed_with_it_then_the_token_is_not_remembered(
    ring: Ring,
) -> None:
    # Given a device's key, taken for a registration, and the device erased before sealing
    [key] = await ring.keyring.ensure_all([(APP, "late")])
    assert await ring.keyring.erase([(APP, "late")]) == 1

    # When the registration is sealed with the key that was let go
    command = personal.seal_command(ring.keyring, _registration("late", "push-late"), key)

    # Then its token cannot be read: nothing kept the value the erasure let go of
    assert sealed.is_sealed(command.device_token)
    assert await ring.keyring.open(APP, "late", TOKEN, command.device_token) == sealed.ERASED
