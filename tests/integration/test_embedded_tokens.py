"""The keys and tokens topics in the embedded mode's kept log (docs/design.md §10, §12).

`devreg run` keeps the compacted topics like the others, gives them back to the broker at
start and at every renewal, and compacts them as Kafka would: a forgotten device's data key
is not in the data directory once its tombstone is kept, and is never given back to the
broker; the token index goes on seeing every claim after renewals and restarts.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
from aiokafka.errors import KafkaError

from events import RegisterDevice, sealed
from projections.positions import Record
from services.kafka.clients import KafkaAccess
from services.keys import records as key_records
from services.log.broker import free_port
from services.log.reader import LogReader
from tests.integration.token_support import admin, data_key, files_holding
from tests.support import APPS, WorkerProcess, call, devreg, metric, now_ms, registration, wait_for
from tests.topics import publish_commands

APP = next(iter(APPS))
BULK = 450  # commands over Kafka: several renewals at one every 100 records per partition
SENDS = 3


def embedded_run(data_dir: Path, tail: int = 200) -> WorkerProcess:
    """`devreg run`, renewing its broker's partitions every 100 records per partition and
    giving it `tail` records of each, in a process group of its own (so a kill takes its
    broker with it, as a crash would)."""
    env = {
        "DEVREG_BROKER_PORT": str(free_port()),
        "DEVREG_EMBEDDED_ROLLOVER": "100",
        "DEVREG_EMBEDDED_TAIL": str(tail),
    }
    return WorkerProcess(data_dir, None, command="run", env=env, own_group=True)


def bootstrap(run: WorkerProcess) -> str:
    return (run.data_dir / "embedded-broker.address").read_text().strip()


async def renewed_under_load(run: WorkerProcess, tag: str) -> None:
    """Publish BULK registrations over Kafka and wait until they are applied and the broker
    was renewed meanwhile."""
    before = await metric(run, "devreg_embedded_rollovers_total")
    commands = [
        RegisterDevice(
            command_id=uuid.uuid4().hex,
            app_id=APP,
            device_id=f"{tag}-{n:04d}",
            device_token=f"{tag}-token-{n}",
            os="IOS",
            os_version="17",
        )
        for n in range(BULK)
    ]
    await published(run, commands)

    async def renewed() -> bool:
        return await metric(run, "devreg_embedded_rollovers_total") > before

    await wait_for(renewed, 60, "a renewal while the bulk was applied")


async def published(run: WorkerProcess, commands: list[RegisterDevice]) -> None:
    """Publish commands and wait until every device is served. As docs/design.md §10 tells a
    publisher on the embedded broker: a send refused during a renewal, or a command with no
    outcome after a while (acknowledged in the moment a renewal lost), is sent again, the
    same command (its id makes it a repeat if it was decided after all)."""
    waiting = {c.device_id: c for c in commands}

    async def served() -> bool:
        for device in list(waiting):
            status, _ = await call("GET", run.url(f"messaging/registrations/{device}"))
            if status != 200:
                return False
            del waiting[device]
        return True

    for _ in range(SENDS):
        with contextlib.suppress(KafkaError):
            await publish_commands(bootstrap(run), f"{run.prefix}.commands", waiting.values())
        with contextlib.suppress(AssertionError):
            await wait_for(served, 30, "every device of the bulk to be served")
            return
    raise AssertionError(f"{len(waiting)} of {len(commands)} not served after {SENDS} sends")


async def broker_records(run: WorkerProcess, name: str) -> list[Record]:
    """Everything the broker itself holds of a topic (no kept log: what a Kafka client of
    the embedded broker can read)."""
    found: list[Record] = []
    async with LogReader(KafkaAccess(bootstrap(run))) as reader:
        tps = await reader.partitions(f"{run.prefix}.{name}")
        async for batch in reader.read(dict.fromkeys(tps, 0)):
            found.extend(batch)
    return found


def key_values(keys: list[Record], device_id: str) -> list[bytes | None]:
    """The values of `device_id`'s records on the keys topic."""
    slots = [(key_records.slot_of(r.key), r.value) for r in keys]
    return [value for slot, value in slots if slot is not None and slot[1] == device_id]


async def as_of_token(run: WorkerProcess, device_id: str, at: int) -> str:
    """The device's token as `devreg as-of` shows it (opened with the keys it reads)."""
    code, out, err = await devreg(
        run, "as-of", "--quiet", str(at), "--app", APP, "--device", device_id
    )
    assert code == 0, err
    token: str = msgspec.json.decode(out)["device"]["device_token"]
    return token


async def test_given_a_forgotten_device_when_renewed_and_restarted_then_its_key_stays_gone(
    tmp_path: Path,
) -> None:
    # Given `devreg run` with two devices, one of which is forgotten
    data = tmp_path / "data"
    run = embedded_run(data)
    await run.start()
    try:
        keeper, gone = f"keep-{uuid.uuid4().hex[:6]}", f"gone-{uuid.uuid4().hex[:6]}"
        url = run.url("messaging/registrations")
        for device in (keeper, gone):
            status, answer = await call("POST", url, registration(device))
            assert status == 200, answer
        registered_at = now_ms()
        wrapped, key = data_key(data, APP, gone)
        # The key as the store keeps it, unwrapped, and as the keys topic's JSON carries it.
        needles = [key, wrapped, base64.b64encode(wrapped)]
        assert files_holding(data / "log", needles)  # kept, like every key record
        status, answer = await admin(run, "POST", f"devices/{gone}/forget")
        assert status == 200, answer

        # Then its key leaves the kept log once its tombstone is kept (compacted in place)
        async def compacted() -> bool:
            return not files_holding(data / "log", needles)

        await wait_for(compacted, 20, "the kept log to drop the erased key")

        # When the broker's partitions are renewed under load
        await renewed_under_load(run, "bulk")

        # Then the broker was given the keys topic back without the erased key, with the
        # other device's key (the broker was given the whole keys partition: the key's record
        # as well as its tombstone)
        keys = await broker_records(run, "keys")
        assert key_values(keys, gone) == [None, None], "the erased key was given back"
        assert [v for v in key_values(keys, keeper) if v is not None]

        # When the whole of `devreg run` is killed (its broker with it) and started again
        await run.kill_group()
        await run.start()

        # Then nothing was discarded, the erased key is neither on the broker nor in any file
        # of the data directory, and the device's token cannot be opened while the other
        # device's still is (over HTTP, and by the CLI with the keys it reads)
        assert "DISCARDED" not in run.log()
        keys = await broker_records(run, "keys")
        assert key_values(keys, gone) == [None, None], "the erased key was given back"
        assert files_holding(data, needles) == []
        assert await as_of_token(run, gone, registered_at) == sealed.ERASED
        assert await as_of_token(run, keeper, registered_at) == f"token-{keeper}"
        status, answer = await call("GET", run.url(f"messaging/registrations/{keeper}"))
        assert (status, answer[0]["deviceToken"]) == (200, f"token-{keeper}")
        status, answer = await call("GET", run.url(f"messaging/registrations/{gone}"))
        assert (status, answer["code"]) == (400, 5000)
        code, out, err = await devreg(run, "verify", "--quiet", deadline_s=120)
        assert code == 0, (out, err)
    finally:
        await run.stop()


async def test_given_a_token_index_when_renewed_and_restarted_then_one_device_per_token_holds(
    tmp_path: Path,
) -> None:
    # Given `devreg run` with a device holding a token, renewed under load (the broker given
    # short tails: where a store reads from further back, it must be given more)
    data = tmp_path / "data"
    run = embedded_run(data, tail=20)
    await run.start()
    try:
        token = f"shared-{uuid.uuid4().hex}"
        first, second, third = (f"{n}-{uuid.uuid4().hex[:6]}" for n in ("a", "b", "c"))
        url = run.url("messaging/registrations")

        async def register(device: str) -> None:
            status, answer = await call("POST", url, registration(device, deviceToken=token))
            assert status == 200, answer

        def held_by(device: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                status, body = await admin(run, "POST", "tokens/lookup", {"deviceToken": token})
                return status == 200 and body["deviceId"] == device

            return check

        def gone(device: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                status, _ = await call("GET", run.url(f"messaging/registrations/{device}"))
                return status == 400

            return check

        await register(first)
        await wait_for(held_by(first), 20, "the token in the index")
        await renewed_under_load(run, "bulk1")

        # When a second device registers the same token after the renewals
        await register(second)

        # Then the first is superseded: the index saw the claim on the renewed topic
        await wait_for(gone(first), 30, "the first device to be superseded")
        await wait_for(held_by(second), 20, "the second device to hold the token")

        # When more claims follow (the second's falls out of the broker's short tail), `devreg
        # run` is killed and started again, its token index lost too (rebuilt from the kept
        # log's tokens topic, which the broker must then be given whole), and a third device
        # registers the token
        await renewed_under_load(run, "bulk2")
        await run.kill_group()
        (data / "token-index.sqlite").unlink()
        await run.start()
        await wait_for(held_by(second), 20, "the rebuilt index to name the second device")
        await renewed_under_load(run, "bulk3")
        await register(third)

        # Then the second is superseded in turn, and the index names the third
        await wait_for(gone(second), 30, "the second device to be superseded")
        await wait_for(held_by(third), 20, "the third device to hold the token")
        status, _ = await call("GET", run.url(f"messaging/registrations/{third}"))
        assert status == 200
    finally:
        await run.stop()
