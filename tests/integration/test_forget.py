"""Forgetting a device (crypto-shredding, docs/design.md §12), on the real broker.

After `forget` no copy of the device's push token or user token can be read anywhere devreg
keeps data, its data key is gone from every file devreg wrote, and `devreg verify` still
passes. Without the sealing at the edge the token would be in the commands and events
topics and in both stores; without the key's erasure (and the archive's tombstones) the key
would be in the key store and in every export.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import msgspec

from events import sealed
from projections.positions import Record
from services.kafka.clients import KafkaAccess
from services.keys import records
from services.log.archive import ArchivedRecord
from services.log.broker import EmbeddedBroker
from services.log.reader import LogReader
from tests.integration.token_support import admin, data_key, files_holding
from tests.support import (
    WorkerProcess,
    admin_headers,
    call,
    devreg,
    now_ms,
    registration,
    wait_for,
)


async def _dump(bootstrap: str, prefix: str) -> list[Record]:
    """Every record of every devreg topic of the worker, read to the end."""
    found: list[Record] = []
    names = ("commands", "events", "outcomes", "keys", "tokens", "commands.dlq")
    for topic in [f"{prefix}.{name}" for name in names]:
        # A reader per topic: one that has read a topic asks the broker about that one only.
        async with LogReader(KafkaAccess(bootstrap)) as reader:
            tps = await reader.partitions(topic)
            async for batch in reader.read(dict.fromkeys(tps, 0)):
                found.extend(batch)
    return found


def _archived_holding(archive: Path, needles: list[bytes]) -> list[str]:
    """An archive keeps keys and values in base64: each record is decoded and searched."""
    decoder = msgspec.json.Decoder(ArchivedRecord)
    with archive.open("rb") as lines:
        return [
            f"{r.topic}[{r.partition}]@{r.offset} holds {needle[:12]!r}…"
            for r in map(decoder.decode, lines)
            for needle in needles
            if needle in (r.key or b"") + (r.value or b"")
        ]


async def test_given_a_forgotten_device_then_no_copy_of_its_token_or_key_is_left_and_verify_passes(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Given a device registered over HTTP with a push token and a user token, and a second
    # one (forgotten with the CLI below)
    data = tmp_path / "worker"
    async with WorkerProcess(data, broker.bootstrap) as worker:
        device, other = f"forget-{uuid.uuid4().hex[:8]}", f"forget-cli-{uuid.uuid4().hex[:8]}"
        token, user = f"push-{uuid.uuid4().hex}", f"user-{uuid.uuid4().hex}"
        other_token = f"push-{uuid.uuid4().hex}"
        url = worker.url("messaging/registrations")
        body = registration(device, deviceToken=token, channels=["news"])
        status, answer = await call("POST", url, body, {"user-token": user})
        assert status == 200, answer
        status, answer = await call("POST", url, registration(other, deviceToken=other_token))
        assert status == 200, answer
        registered_at = now_ms()
        status, answer = await call("GET", worker.url(f"messaging/registrations/{device}"))
        assert answer[0]["deviceToken"] == token  # opened for the answer

        async def indexed() -> bool:
            status, _ = await admin(worker, "POST", "tokens/lookup", {"deviceToken": token})
            return status == 200

        await wait_for(indexed, 20, "the token in the index")
        wrapped, key = data_key(data, "app-a", device)
        code, out, err = await devreg(
            worker, "as-of", "--quiet", str(now_ms()), "--app", "app-a", "--device", device
        )
        assert code == 0, err
        assert msgspec.json.decode(out)["device"]["device_token"] == token  # the CLI opens it

        # When it is forgotten over HTTP, and the other one with `devreg forget`
        status, answer = await admin(worker, "POST", f"devices/{device}/forget")
        assert status == 200, answer
        assert answer["changed"] is True
        code, out, err = await devreg(worker, "forget", "app-a", other)
        assert code == 0, err
        assert b'"accepted":true' in out

        # Then it is gone, its history ends with the erasure, and what it was is shown erased
        status, answer = await call("GET", worker.url(f"messaging/registrations/{device}"))
        assert (status, answer["code"]) == (400, 5000)
        status, answer = await call(
            "GET",
            worker.admin_url(f"messaging/registrations/{device}/history"),
            headers=admin_headers(),
        )
        assert [e["type"] for e in answer["events"]] == [
            "device-registered/1",
            "device-forgotten/1",
        ]
        status, answer = await call(
            "GET",
            worker.admin_url(f"messaging/registrations/{device}/as-of/{registered_at}"),
            headers=admin_headers(),
        )
        assert status == 200, answer
        assert answer[0]["deviceToken"] == sealed.ERASED
        status, _ = await admin(worker, "POST", "tokens/lookup", {"deviceToken": token})
        assert status == 400

        # and the audit CLI agrees: the chain holds with the erasure in it, replay never fails
        # on the sealed fields, and as-of shows the token erased
        code, out, err = await devreg(worker, "history", "--quiet", "app-a", device)
        assert code == 0, err
        story = msgspec.json.decode(out)
        assert story["chain"]["intact"] is True
        assert story["events"][-1]["event"]["type"] == "device-forgotten/1"
        code, out, err = await devreg(
            worker, "replay", "--quiet", "--app", "app-a", "--device", device
        )
        assert code == 0, err
        assert len(out.splitlines()) == 2
        code, out, err = await devreg(
            worker, "as-of", "--quiet", str(registered_at), "--app", "app-a", "--device", device
        )
        assert code == 0, err
        assert msgspec.json.decode(out)["device"]["device_token"] == sealed.ERASED

        # and the log still verifies, and an export holds no copy either
        code, out, err = await devreg(worker, "verify", "--quiet")
        assert code == 0, (out, err)
        code, _, err = await devreg(worker, "export", str(data / "export.ndjson"))
        assert code == 0, err
        dump = await _dump(broker.bootstrap, worker.prefix)
        secrets = [token.encode(), user.encode(), other_token.encode()]
        # The key as the store keeps it, unwrapped, and as the keys topic's JSON carries it.
        keys = [key, wrapped, base64.b64encode(wrapped)]
        assert files_holding(data, [*secrets, *keys]) == []
        assert _archived_holding(data / "export.ndjson", [*secrets, *keys]) == []

    # and none after the worker stopped (its stores closed, their journals gone) either
    assert files_holding(data, [*secrets, *keys]) == []
    # nor in any topic: the key itself stays on the embedded broker's keys topic (it never
    # compacts) until it restarts, followed by its tombstone (docs/audit.md)
    for record in dump:
        for secret in secrets:
            assert secret not in (record.key or b"") + (record.value or b""), record.topic
    keys_topic = [r for r in dump if r.topic == f"{worker.prefix}.keys"]
    print([(r.key, r.value) for r in keys_topic])
    slots = [records.slot_of(r.key) for r in keys_topic if r.value is None]
    assert ("app-a", device) in {(s[0], s[1]) for s in slots if s}


async def test_given_a_token_served_by_a_get_and_a_page_then_after_forget_no_read_serves_it(
    devreg_worker: WorkerProcess,
) -> None:
    # Given a device whose token a GET and a channel page served (and the worker remembers)
    worker = devreg_worker
    device, token = f"served-{uuid.uuid4().hex[:8]}", f"push-{uuid.uuid4().hex}"
    channel = f"reads-{uuid.uuid4().hex[:8]}"
    body = registration(device, deviceToken=token, channels=[channel])
    status, answer = await call("POST", worker.url("messaging/registrations"), body)
    assert status == 200, answer
    registered_at = now_ms()
    status, answer = await call("GET", worker.url(f"messaging/registrations/{device}"))
    assert answer[0]["deviceToken"] == token
    page = worker.admin_url(f"messaging/channels/{channel}/devices")
    status, answer = await call("GET", page, headers=admin_headers())
    assert [d["deviceToken"] for d in answer["devices"]] == [token]

    # When it is forgotten
    status, answer = await admin(worker, "POST", f"devices/{device}/forget")
    assert (status, answer["changed"]) == (200, True), answer

    # Then no read serves the token again: not a GET, not a page, and not the reads that
    # still find its sealed text (as-of and history open the same text the GET opened)
    status, answer = await call("GET", worker.url(f"messaging/registrations/{device}"))
    assert (status, answer["code"]) == (400, 5000)
    status, answer = await call("GET", page, headers=admin_headers())
    assert (status, answer["devices"]) == (200, [])
    as_of = worker.admin_url(f"messaging/registrations/{device}/as-of/{registered_at}")
    status, answer = await call("GET", as_of, headers=admin_headers())
    assert (status, answer[0]["deviceToken"]) == (200, sealed.ERASED)
    history = worker.admin_url(f"messaging/registrations/{device}/history")
    status, answer = await call("GET", history, headers=admin_headers())
    assert status == 200, answer
    assert token not in msgspec.json.encode(answer).decode()
    assert sealed.ERASED in msgspec.json.encode(answer).decode()
