"""The embedded broker's public port (services/log/public_port.py): Kafka publishers writing
without pause through renewals of `devreg run`'s broker never land in a fresh partition
before its tail, so the worker never stops and every acknowledged command is decided."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from services.log.broker import EmbeddedBroker
from services.log.public_port import MAX_FRAME, PublicPort, answer_expected
from tests.support import APPS, call, devreg, metric, renewing_run, wait_for
from tests.topics import keyed_registration

APP = next(iter(APPS))
PUBLISHERS, RENEWALS = 4, 4


def _request(version: int, acks: int, body_head: bytes = b"") -> bytes:
    """A produce request's header and its body up to acks (what answer_expected reads)."""
    header = struct.pack(">hhih", 0, version, 77, 6) + b"client"
    if version >= 9:
        header += b"\x00"  # no tagged fields
    return header + body_head + struct.pack(">h", acks) + b"rest of the request"


@pytest.mark.parametrize(
    ("version", "body_head"),
    [(2, b""), (3, struct.pack(">h", -1)), (7, struct.pack(">h", 3) + b"txn"), (9, b"\x00")],
)
@pytest.mark.parametrize("acks", [-1, 1, 0])
def test_a_produce_expects_an_answer_unless_acks_is_0(
    version: int, body_head: bytes, acks: int
) -> None:
    expected = None if acks == 0 else 77
    assert answer_expected(_request(version, acks, body_head)) == expected


def test_other_requests_and_scraps_expect_nothing_awaited() -> None:
    metadata = struct.pack(">hhih", 3, 9, 5, -1) + b"\x00"
    assert answer_expected(metadata) is None
    assert answer_expected(b"\x00\x00\x00") is None  # too short to read
    assert answer_expected(_request(9, 1, b"")[:-21]) is None  # cut before acks


async def _metadata_answered(port: int) -> bool:
    """Whether a Metadata request (v1, no topics) sent through the port is answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = struct.pack(">hhih", 3, 1, 9, -1) + struct.pack(">i", 0)
        writer.write(struct.pack(">i", len(request)) + request)
        await writer.drain()
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        answer = await reader.readexactly(size)
        return struct.unpack(">i", answer[:4])[0] == 9
    finally:
        writer.close()


async def test_given_a_frame_over_the_limit_then_its_connection_alone_is_closed(
    broker: EmbeddedBroker,
) -> None:
    # Given the public port in front of a real broker
    port = PublicPort((broker.host, broker.port))
    bound = await port.start("127.0.0.1", 0)
    try:
        # When a client announces a frame of over 100 MiB
        reader, writer = await asyncio.open_connection("127.0.0.1", bound)
        writer.write(struct.pack(">i", MAX_FRAME + 1))
        await writer.drain()

        # Then that connection is closed without reading it, and others are still served
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        assert await _metadata_answered(bound)
    finally:
        await port.stop()


async def test_given_publishers_writing_without_pause_through_renewals_then_none_is_lost(
    tmp_path: Path,
) -> None:
    # Given `devreg run` renewing its broker's partitions every 100 records per partition
    run = renewing_run(tmp_path / "data")
    await run.start()
    try:
        bootstrap = (run.data_dir / "embedded-broker.address").read_text().strip()
        assert bootstrap.endswith(f":{run.extra_env['DEVREG_BROKER_PORT']}")
        acknowledged: list[str] = []
        enough = asyncio.Event()

        # When publishers send commands one at a time, each the moment the last was
        # acknowledged, until RENEWALS renewals happened while they wrote
        async def publisher(number: int) -> None:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
            await producer.start()
            try:
                n = 0
                while not enough.is_set():
                    device = f"p{number}-{n:05d}"
                    key, value = keyed_registration(APP, device)
                    await producer.send_and_wait(f"{run.prefix}.commands", value, key=key)
                    acknowledged.append(device)
                    n += 1
            finally:
                await producer.stop()

        async def renewed() -> bool:
            return await metric(run, "devreg_embedded_rollovers_total") >= RENEWALS

        publishers = [asyncio.ensure_future(publisher(k)) for k in range(PUBLISHERS)]
        try:
            await wait_for(renewed, 180, f"{RENEWALS} renewals while publishers write")
        finally:
            enough.set()
            await asyncio.gather(*publishers)

        # Then the worker still runs, no record of theirs ever reached a fresh partition,
        # every acknowledged command was decided once, and the log verifies
        assert run.process is not None
        assert run.process.returncode is None
        assert await metric(run, "devreg_embedded_rollover_foreign_records_total") == 0

        async def all_decided() -> bool:
            decided = await metric(run, "devreg_commands_total", result="accepted")
            return decided >= len(acknowledged)

        await wait_for(all_decided, 120, "every acknowledged command to be decided")
        assert await metric(run, "devreg_commands_total", result="accepted") == len(acknowledged)
        for device in (acknowledged[0], acknowledged[len(acknowledged) // 2], acknowledged[-1]):
            status, _ = await call("GET", run.url(f"messaging/registrations/{device}"))
            assert status == 200, device
        code, out, err = await devreg(run, "verify", deadline_s=120)
        assert code == 0, err
        assert msgspec.json.decode(out.splitlines()[-1])["verdict"] == "pass"
    finally:
        await run.stop()
