"""A decision prepared ahead of its instant (services/stream/prepared_expiries.py) is the very
decision the processor would make afresh: same events, bytes and all, same outcome, same
committed state; and one whose device was decided on since is not used. Two processors on
real SQLite files see the same commands, one preparing and one not (tests/processor_rig.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import DueExpiry, ExpireRegistrations, RegisterDevice, encode
from events.identity import partition_key
from projections.positions import Record
from tests.processor_rig import APP, Rig, close_rig, open_rig, registration

EXPIRATION = 50_000
DEVICES = [f"d{i}" for i in range(5)]


def folder(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.fixture
async def rigs(tmp_path: Path) -> AsyncIterator[tuple[Rig, Rig]]:
    ahead = await open_rig(folder(tmp_path / "ahead"))
    afresh = await open_rig(folder(tmp_path / "afresh"))
    yield ahead, afresh
    for rig in (ahead, afresh):
        await close_rig(rig)


def record(rig: Rig, offset: int, command: RegisterDevice | ExpireRegistrations) -> Record:
    key = partition_key(APP, command.device_id or DEVICES[0])
    return Record(rig.settings.commands_topic, 0, offset, 0, key, encode(command))


EXPIRY = ExpireRegistrations(
    command_id="expire/p0/ahead",
    app_id=APP,
    issued_at=EXPIRATION,  # issued at the instant, as the scheduler does ahead
    devices=tuple(DueExpiry(device_id=d, expiration=EXPIRATION, version=1) for d in DEVICES),
)


async def decide(rig: Rig, offset: int, command: RegisterDevice | ExpireRegistrations) -> None:
    await rig.processor.handle([record(rig, offset, command)])
    rig.producer.release()
    await rig.processor.drain()
    assert rig.failures == []


async def registered(rig: Rig) -> int:
    for offset, device in enumerate(DEVICES):
        await decide(rig, offset, registration(device, f"reg-{device}", EXPIRATION))
    return len(DEVICES)


def sent(rig: Rig) -> list[tuple[str, bytes | None, bytes | None]]:
    return [(r.topic, r.key, r.value) for r in rig.producer.sent]


async def states(rig: Rig) -> dict[tuple[str, str], bytes]:
    loaded = await rig.decisions.load_states((APP, d) for d in DEVICES)
    return {k: encode(v) for k, v in loaded.items()}


async def test_given_an_expiry_prepared_ahead_then_its_use_is_what_deciding_afresh_gives(
    rigs: tuple[Rig, Rig],
) -> None:
    ahead, afresh = rigs
    offset = await registered(ahead)
    await registered(afresh)

    # Given the expiry command decided ahead by one processor (nothing sent meanwhile)
    before = len(ahead.producer.sent)
    assert await ahead.processor.prepare([(0, EXPIRY)]) == 1
    assert len(ahead.producer.sent) == before

    # When the command arrives at both, one with the decision kept, the other without
    await decide(ahead, offset, EXPIRY)
    await decide(afresh, offset, EXPIRY)

    # Then both sent the same records (events, outcome), and committed the same states
    assert sent(ahead) == sent(afresh)
    assert await states(ahead) == await states(afresh)
    assert ahead.metrics.value("devreg_expiry_prepared_total", result="used") == 1
    assert ahead.metrics.value("devreg_commands_total", result="accepted") == (
        afresh.metrics.value("devreg_commands_total", result="accepted")
    )


async def test_given_a_device_decided_on_after_the_preparation_then_the_command_is_decided_afresh(
    rigs: tuple[Rig, Rig],
) -> None:
    ahead, afresh = rigs
    offset = await registered(ahead)
    await registered(afresh)
    assert await ahead.processor.prepare([(0, EXPIRY)]) == 1

    # Given one device registered again (a later expiration) after the preparation
    again = registration(DEVICES[2], "reg-again", EXPIRATION * 2)
    await decide(ahead, offset, again)
    await decide(afresh, offset, again)

    # When the expiry command arrives
    await decide(ahead, offset + 1, EXPIRY)
    await decide(afresh, offset + 1, EXPIRY)

    # Then the kept decision (which would have expired that device) was not used
    assert ahead.metrics.value("devreg_expiry_prepared_total", result="dropped") == 1
    assert ahead.metrics.value("devreg_expiry_prepared_total", result="used") == 0
    assert sent(ahead) == sent(afresh)
    assert await states(ahead) == await states(afresh)
    assert (await ahead.decisions.load_states([(APP, DEVICES[2])]))[(APP, DEVICES[2])].exists


async def test_given_a_repeated_expiry_command_then_the_kept_decision_is_not_used_again(
    rigs: tuple[Rig, Rig],
) -> None:
    ahead, _ = rigs
    offset = await registered(ahead)
    await decide(ahead, offset, EXPIRY)

    # Given the command decided already: preparing it again keeps nothing
    assert await ahead.processor.prepare([(0, EXPIRY)]) == 0

    # And a command on the wrong partition is not prepared either
    assert await ahead.processor.prepare([(3, EXPIRY)]) == 0


async def test_given_a_device_kept_already_then_a_second_command_naming_it_is_not_kept(
    rigs: tuple[Rig, Rig],
) -> None:
    ahead, _ = rigs
    await registered(ahead)
    assert await ahead.processor.prepare([(0, EXPIRY)]) == 1

    # Given another command naming one of its devices (another instant)
    later = ExpireRegistrations(
        command_id="expire/p0/later",
        app_id=APP,
        issued_at=EXPIRATION * 2,
        devices=(DueExpiry(device_id=DEVICES[0], expiration=EXPIRATION * 2, version=1),),
    )

    # Then it is not kept, nor counted as kept
    assert await ahead.processor.prepare([(0, later)]) == 0
    assert ahead.metrics.value("devreg_expiry_prepared_total", result="kept") == 1
