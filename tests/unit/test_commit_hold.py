"""An expiry burst's commits held until the burst is sent (services/stream/commit_hold.py),
alone and in the command processor on real SQLite files (tests/processor_rig.py)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import DueExpiry, ExpireRegistrations, RegisterDevice, encode
from events.identity import partition_key
from projections.positions import Record
from services.stream.commit_hold import CommitHold
from services.stream.decision_store import DecisionBatch
from tests.processor_rig import APP, Rig, close_rig, open_rig, registration

EXPIRATION = 50_000  # long past: the kept decisions are due as soon as they are kept
DEVICES = [f"d{i}" for i in range(6)]


async def turns(n: int = 50) -> None:
    """Let the event loop run `n` rounds: more than a released batch needs to commit (its
    acknowledgement, the fold and the commit run inline on real SQLite files)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_given_no_kept_decision_due_then_no_hold_begins() -> None:
    hold = CommitHold(lambda now: False)
    assert not hold.begin()
    hold.after_sending(afresh=False)
    assert not hold.active
    await asyncio.wait_for(hold.passed(), 1)


async def test_given_a_batch_decided_afresh_then_the_hold_ends() -> None:
    released: list[str] = []
    hold = CommitHold(lambda now: True, released.append)
    assert hold.begin()
    hold.after_sending(afresh=False)
    assert hold.active
    hold.after_sending(afresh=True)
    assert not hold.active
    assert released == ["afresh"]
    await asyncio.wait_for(hold.passed(), 1)


async def test_given_the_due_commands_never_arrive_then_the_hold_ends_after_its_bound() -> None:
    released: list[str] = []
    hold = CommitHold(lambda now: True, released.append, hold_max_s=0.05)
    assert gc.isenabled()
    assert hold.begin()
    assert not gc.isenabled()  # the collector waits while the burst is sent
    await asyncio.wait_for(hold.passed(), 2)
    assert not hold.active
    assert released == ["bound"]
    assert gc.isenabled()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    rig = await open_rig(tmp_path)
    yield rig
    await close_rig(rig)


def record(rig: Rig, offset: int, command: RegisterDevice | ExpireRegistrations) -> Record:
    key = partition_key(APP, command.device_id or DEVICES[0])
    return Record(rig.settings.commands_topic, 0, offset, 0, key, encode(command))


def expiry(name: str, devices: list[str]) -> ExpireRegistrations:
    due = tuple(DueExpiry(device_id=d, expiration=EXPIRATION, version=1) for d in devices)
    return ExpireRegistrations(
        command_id=f"expire/{name}", app_id=APP, issued_at=EXPIRATION, devices=due
    )


async def burst_kept(rig: Rig) -> tuple[int, list[ExpireRegistrations]]:
    """The devices registered and committed; two expiry commands of one instant decided
    ahead; returns the next commands offset and the commands."""
    for offset, device in enumerate(DEVICES):
        await rig.processor.handle(
            [record(rig, offset, registration(device, f"reg-{device}", EXPIRATION))]
        )
        rig.producer.release()
    await rig.processor.drain()
    commands = [expiry("a", DEVICES[:3]), expiry("b", DEVICES[3:])]
    assert await rig.processor.prepare([(0, c) for c in commands]) == 2
    return len(DEVICES), commands


def committed_commits(rig: Rig) -> list[int]:
    """Records the number of records sent at each decision commit."""
    at_commit: list[int] = []
    commit = rig.decisions.commit

    async def counting(batch: DecisionBatch) -> None:
        at_commit.append(len(rig.producer.sent))
        await commit(batch)

    rig.decisions.commit = counting  # type: ignore[method-assign]
    return at_commit


async def first_of_burst_sent(rig: Rig) -> tuple[int, ExpireRegistrations, list[int]]:
    """The scheduler's word that the instant's commands are on their way, then the first of
    two sent and acknowledged; returns the next offset, the second, and the commits so far."""
    offset, (first, second) = await burst_kept(rig)
    at_commit = committed_commits(rig)
    assert rig.processor.hold_commits()
    await rig.processor.handle([record(rig, offset, first)])
    rig.producer.release()
    await turns()
    return offset + 1, second, at_commit


async def test_given_a_burst_decided_ahead_then_no_commit_runs_until_all_of_it_is_sent(
    rig: Rig,
) -> None:
    # Given the scheduler's word, when the first command of the burst is sent and
    # acknowledged
    offset, second, at_commit = await first_of_burst_sent(rig)

    # Then it is not committed: the second is still to be sent
    assert at_commit == []
    assert rig.processor.holding

    # And once the second is sent, both commit, in order, after every record of the burst
    await rig.processor.handle([record(rig, offset, second)])
    sent = len(rig.producer.sent)
    assert not rig.processor.holding
    rig.producer.release()
    await rig.processor.drain()
    assert rig.failures == []
    assert at_commit == [sent, sent]
    assert rig.decisions.next_offsets[(rig.settings.commands_topic, 0)] == offset + 1
    assert rig.metrics.value("devreg_expiry_prepared_total", result="used") == 2
    assert rig.metrics.value("devreg_expiry_bursts_held_total", ended="sent") == 1


async def test_given_a_command_decided_afresh_during_the_burst_then_the_hold_ends(
    rig: Rig,
) -> None:
    offset, _, at_commit = await first_of_burst_sent(rig)
    assert at_commit == []

    # When a registration arrives before the rest of the burst
    handled = asyncio.ensure_future(
        rig.processor.handle([record(rig, offset, registration("other", "reg-other", None))])
    )
    await turns()

    # Then the hold ends: the burst's batch commits, then the registration's
    assert not rig.processor.holding
    rig.producer.release()
    await asyncio.wait_for(handled, 5)
    rig.producer.release()
    await rig.processor.drain()
    assert rig.failures == []
    assert len(at_commit) == 2
    assert rig.metrics.value("devreg_expiry_bursts_held_total", ended="afresh") == 1
    assert rig.decisions.next_offsets[(rig.settings.commands_topic, 0)] == offset + 1
