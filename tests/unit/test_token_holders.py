"""The processor's token releases use the fingerprint kept for a device's sealed token instead
of opening it again (services/stream/token_claims.py), on a real decision store file: the
records are the ones opening gives, and a forget drops what was kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import AnyCommand, ChannelCreated, ForgetDevice, sealed
from services.stream.decision_store import DecisionBatch, DecisionStore
from services.stream.ownership import Ownership
from services.stream.pending_decisions import PendingDecisions
from services.stream.token_claims import Out, TokenClaims, Transition
from services.tokens import records
from tests.unit.domain import APP, DEVICE, HOUR, NOW, Registry, expire, register

SEALED = "sealed:1:1700000000000-00aa:b2xkLXRva2Vu"
SEALED_OTHER = "sealed:1:1700000000000-00aa:bmV3LXRva2Vu"
INDEX_KEY = b"k" * 32
KEY = (APP, DEVICE)


class CountingKeyring:
    """Opens the two sealed texts above (as the device's key would), counting every open; and
    counts the partitions worked out (murmur2, as the worker's)."""

    def __init__(self) -> None:
        self.opened = 0
        self.partitioned = 0

    def partition_of(self, app_id: str, device_id: str) -> int:
        self.partitioned += 1
        return Ownership("", 6).partition_of(app_id, device_id)

    async def open(self, app_id: str, device_id: str, field: str, text: str) -> str:
        self.opened += 1
        return {SEALED: "token-1", SEALED_OTHER: "token-2"}.get(text, sealed.ERASED)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[DecisionStore]:
    opened = await DecisionStore.open(tmp_path / "decisions.sqlite")
    yield opened
    await opened.close()


def claims_with(keyring: CountingKeyring) -> TokenClaims:
    return TokenClaims(keyring, INDEX_KEY, keyring.partition_of)  # type: ignore[arg-type]


def step(registry: Registry, command: AnyCommand, now: int) -> Transition:
    before = registry.states.get(DEVICE)
    events = registry.accepted(command, now)
    device_events = tuple(e for e in events if not isinstance(e, ChannelCreated))
    return Transition(before, registry.state(), device_events)


async def decided(store: DecisionStore, claims: TokenClaims, t: Transition) -> list[Out]:
    """The records of `t` with what the store keeps, committed as the processor does."""
    batch = DecisionBatch()
    known = await store.load_fingerprints([KEY])
    out = await claims.records([t], batch, known, await store.load_holders([KEY]))
    await store.commit(batch)
    return out


async def opened_afresh(t: Transition) -> list[Out]:
    """The records of `t` by opening every token, as before anything was kept."""
    return await claims_with(CountingKeyring()).records([t], DecisionBatch(), {}, {})


async def test_given_a_claimed_token_when_the_device_expires_then_released_without_opening(
    store: DecisionStore,
) -> None:
    # Given: a device registered (its token opened once, for the claim)
    keyring = CountingKeyring()
    claims = claims_with(keyring)
    registry = Registry()
    registration = step(
        registry, register(device_token=SEALED, channels=("a",), expiration=NOW), NOW - HOUR
    )
    claimed = await decided(store, claims, registration)
    assert keyring.opened == 1
    assert len(claimed) == 1

    # When: its registration expires, decided by a processor that opened nothing since
    expiry = step(registry, expire(expiration=NOW), NOW + 1)
    released = await decided(store, claims, expiry)

    # Then: the release is the one opening the token gives, and neither the token was opened
    # nor its partition worked out again
    assert keyring.opened == 1
    assert keyring.partitioned == 1
    assert released == await opened_afresh(expiry)
    [(partition, record_key, value)] = released
    assert record_key == claimed[0][1]
    token_slot = (APP, records.fingerprint(INDEX_KEY, APP, "token-1"), DEVICE)
    assert records.slot_of(record_key) == token_slot
    assert partition == Ownership("", 6).partition_of(APP, records.routing_id(token_slot[1]))
    assert value == b'{"type":"release","version":2}'


async def test_given_a_new_token_then_only_it_is_opened_and_a_forget_drops_what_was_kept(
    store: DecisionStore,
) -> None:
    # Given: a device registered with one token, then with another
    keyring = CountingKeyring()
    claims = claims_with(keyring)
    registry = Registry()
    first = step(registry, register(device_token=SEALED, channels=("a",)), NOW - HOUR)
    await decided(store, claims, first)
    again = step(registry, register("reg-2", device_token=SEALED_OTHER, channels=("a",)), NOW)

    # When
    changed = await decided(store, claims, again)

    # Then: the old token's release used the kept fingerprint, the new one was opened
    assert keyring.opened == 2
    assert changed == await opened_afresh(again)
    assert (await store.load_holders([KEY]))[KEY][0] == SEALED_OTHER

    # When: the device is forgotten
    forget = ForgetDevice(command_id="forget-1", app_id=APP, device_id=DEVICE)
    tombstones = await decided(store, claims, step(registry, forget, NOW + 1))

    # Then: a tombstone for each token it claimed, and nothing of it kept
    assert [value for _, _, value in tombstones] == [None, None]
    assert await store.load_holders([KEY]) == {}
    assert await store.load_fingerprints([KEY]) == {}


def test_given_a_pending_forget_then_the_next_batch_sees_no_kept_fingerprint() -> None:
    # Given: a batch that kept a device's fingerprint, and a later one that forgot it, both
    # decided and not yet committed
    pending = PendingDecisions()
    pending.add(DecisionBatch(holders={KEY: (SEALED, "fp-1", 1)}))
    pending.add(DecisionBatch(unfingerprinted={KEY}))

    # When / Then: the stored one is dropped too; a batch after them keeps a new one
    assert pending.over_holders([KEY], {KEY: (SEALED, "fp-0", 0)}) == {}
    pending.add(DecisionBatch(holders={KEY: (SEALED_OTHER, "fp-2", 2)}))
    assert pending.over_holders([KEY], {}) == {KEY: (SEALED_OTHER, "fp-2", 2)}
