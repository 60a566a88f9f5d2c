"""Renewing the embedded broker's partitions while commands flow (services/log/rollover.py):
commands published to Kafka in bulk (a backlog past the kept log) and over HTTP are all
decided once, and the log read back through the kept log is whole."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from pathlib import Path

import msgspec

from events import RegisterDevice
from tests.support import (
    APPS,
    PARTITIONS,
    call,
    devreg,
    metric,
    registration,
    renewing_run,
    wait_for,
    write_as_client,
)
from tests.topics import publish_commands

APP = next(iter(APPS))
PUBLISHED = 3000
OVER_HTTP = 300


def _registrations(prefix: str, count: int) -> list[RegisterDevice]:
    """Commands a publisher sends straight to Kafka: devices `prefix`00000 and on."""
    return [
        RegisterDevice(
            command_id=uuid.uuid4().hex,
            app_id=APP,
            device_id=f"{prefix}{n:05d}",
            device_token=f"tok-{prefix}{n}",
            os="IOS",
            os_version="17",
            channels=("news",),
        )
        for n in range(count)
    ]


async def test_given_renewals_while_commands_flow_then_every_command_is_decided_once(
    tmp_path: Path,
) -> None:
    # Given `devreg run` renewing its broker's partitions every 100 records per partition
    run = renewing_run(tmp_path / "data")
    await run.start()
    try:
        # When commands arrive in bulk over Kafka and one by one over HTTP at the same time
        bootstrap = (run.data_dir / "embedded-broker.address").read_text().strip()
        commands = _registrations("k", PUBLISHED)

        async def over_http() -> None:
            for n in range(OVER_HTTP):
                body = registration(f"h{n:05d}", channels=["news"])
                status, answer = await call("POST", run.url("messaging/registrations"), body)
                assert status == 200, answer

        await asyncio.gather(
            publish_commands(bootstrap, f"{run.prefix}.commands", commands, partitions=3),
            over_http(),
        )

        # Then every device is served, the broker was renewed meanwhile, each command was
        # decided once, and the log read through the kept log verifies
        async def all_decided() -> bool:
            decided = await metric(run, "devreg_commands_total", result="accepted")
            return decided >= PUBLISHED + OVER_HTTP

        await wait_for(all_decided, 120, "every command to be decided")
        for name in ("k00000", f"k{PUBLISHED - 1:05d}", f"h{OVER_HTTP - 1:05d}"):
            status, _ = await call("GET", run.url(f"messaging/registrations/{name}"))
            assert status == 200, name
        assert await metric(run, "devreg_embedded_rollovers_total") >= 3
        assert await metric(run, "devreg_commands_total", result="accepted") == (
            PUBLISHED + OVER_HTTP
        )
        code, out, err = await devreg(run, "verify", deadline_s=120)
        assert code == 0, err
        assert msgspec.json.decode(out.splitlines()[-1])["verdict"] == "pass"
    finally:
        await run.stop()


CLIENTS, AT_LEAST, AT_MOST = 8, 60, 400  # registrations per client
RENEWALS = 3


async def test_given_renewals_while_http_writes_are_handed_off_then_none_is_lost_or_doubled(
    tmp_path: Path,
) -> None:
    # Given `devreg run` renewing its broker's partitions every 100 records per partition,
    # its own commands decided from Kafka's acknowledgement (the hand-off, the default)
    run = renewing_run(tmp_path / "data")
    await run.start()
    try:
        # When concurrent clients register devices and delete some, every answer awaited (a
        # write shed while a renewal holds the writers is sent again, as a client does),
        # until RENEWALS renewals happened while they wrote (how many writes that takes
        # depends on the machine's speed: the renewal loop looks every 0.2 s)
        renewed = asyncio.Event()
        done = [0] * CLIENTS

        async def client(c: int) -> None:
            for n in range(AT_MOST):
                if n >= AT_LEAST and renewed.is_set():
                    return
                device = f"c{c}-{n:03d}"
                body = registration(device, channels=["news"])
                url = run.url("messaging/registrations")
                status, answer = await write_as_client("POST", url, body)
                assert status == 200, answer
                if n % 4 == 0:
                    status, answer = await write_as_client("DELETE", f"{url}/{device}")
                    assert (status, answer) == (200, {"result": True})
                done[c] = n + 1

        async def enough_renewals() -> bool:
            return await metric(run, "devreg_embedded_rollovers_total") >= RENEWALS

        async def watch() -> None:
            await wait_for(enough_renewals, 600, f"{RENEWALS} renewals")
            renewed.set()

        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.gather(*(client(c) for c in range(CLIENTS)))
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

        # Then renewals happened while the hand-off decided the commands, every command was
        # decided exactly once (none repeated: a command written back at another offset would
        # be decided again as a repeat), and every answer holds: what was registered is
        # served, what was deleted is gone
        assert renewed.is_set(), f"fewer than {RENEWALS} renewals in {sum(done)} registrations"
        writes = sum(n + (n + 3) // 4 for n in done)  # a DELETE after every fourth
        assert await metric(run, "devreg_commands_handed_off_total") > writes / 2
        assert await metric(run, "devreg_commands_total", result="accepted") == writes
        assert await metric(run, "devreg_commands_total", result="repeated") == 0
        for c in range(CLIENTS):
            for n in range(done[c]):
                status, answer = await call("GET", run.url(f"messaging/registrations/c{c}-{n:03d}"))
                if n % 4 == 0:
                    assert (status, answer["code"]) == (400, 5000)
                else:
                    assert (status, answer[0]["channels"]) == (200, ["news"])
        code, out, err = await devreg(run, "verify", deadline_s=120)
        assert code == 0, err
        assert msgspec.json.decode(out.splitlines()[-1])["verdict"] == "pass"
    finally:
        await run.stop()


BACKLOG = 4000
GIVEN = re.compile(r"fresh partitions in .* the broker was given the last ([\d,]+)")


async def test_given_a_backlog_published_in_bulk_then_renewals_do_not_copy_it_again_and_again(
    tmp_path: Path,
) -> None:
    # Given `devreg run` renewing every 100 records per partition, with tails of 20, and
    # copying at most 500 records its stores have still to read (DEVREG_EMBEDDED_BACKLOG)
    tail = 20
    run = renewing_run(
        tmp_path / "data", DEVREG_EMBEDDED_TAIL=str(tail), DEVREG_EMBEDDED_BACKLOG="500"
    )
    await run.start()
    try:
        # When commands are published in bulk over Kafka, far more than the processor decides
        # before the first renewal is due
        bootstrap = (run.data_dir / "embedded-broker.address").read_text().strip()
        commands = _registrations("b", BACKLOG)
        await publish_commands(bootstrap, f"{run.prefix}.commands", commands, partitions=3)

        async def all_decided() -> bool:
            return await metric(run, "devreg_commands_total", result="accepted") >= BACKLOG

        await wait_for(all_decided, 180, "every command to be decided")

        # Then the broker was renewed, but beyond the tails the renewals copied the backlog
        # for the processor to read less than twice over (copying it at each renewal, every
        # 100 records, would copy it many times), and each command was decided once
        log_text = run.log_path.read_text()
        given = [int(n.replace(",", "")) for n in GIVEN.findall(log_text)]
        tails = len(given) * 6 * PARTITIONS * tail  # six topics
        assert sum(given) - tails <= 2 * BACKLOG, given
        # (put off while the backlog waited in the broker, or once kept, for the processor)
        assert "broker renewal put off" in log_text
        assert await metric(run, "devreg_commands_total", result="accepted") == BACKLOG
        assert await metric(run, "devreg_commands_total", result="repeated") == 0
        status, _ = await call("GET", run.url(f"messaging/registrations/b{BACKLOG - 1:05d}"))
        assert status == 200
    finally:
        await run.stop()
