"""Session tokens are never kept (docs/security.md): the SDK's `user-token` header becomes a
keyed fingerprint at the HTTP edge, a raw token a Kafka publisher wrote becomes one before it
is decided, and an old event that still holds a raw token is redacted wherever it is shown."""

from __future__ import annotations

import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from events import (
    DeviceRegistered,
    DeviceUnregistered,
    RegisterDevice,
    decode_event,
    encode,
    sealed,
)
from events.identity import event_id, partition_key, registration_id, seal
from events.user_tokens import REDACTED, TokenKeys
from services.config import load_settings
from services.kafka.partitioner import key_partition
from services.keys.snapshot import read_snapshot
from services.log.broker import EmbeddedBroker
from tests.support import (
    TOKEN_KEYS,
    WorkerProcess,
    admin_headers,
    call,
    devreg,
    now_ms,
    registration,
    wait_for,
)
from tests.topics import publish_commands, read_records, read_topic

KEYS = TokenKeys.parse(TOKEN_KEYS)
APP = "app-a"


async def topic_bytes(broker: EmbeddedBroker, topic: str, enough: int) -> bytes:
    records = await read_records(broker.bootstrap, topic, enough, 20)
    return b"\n".join((r.key or b"") + b" " + (r.value or b"") for r in records)


def stored_bytes(data_dir: Path) -> bytes:
    """Every byte of the worker's SQLite files (WAL included), as a disk would hold them."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("*.sqlite*")))


async def events_of(broker: EmbeddedBroker, worker: WorkerProcess, device: str, count: int) -> list:
    def enough(records: list) -> bool:  # type: ignore[type-arg]
        return len(mine(records)) >= count

    def mine(records: list) -> list:  # type: ignore[type-arg]
        decoded = (decode_event(r.value) for r in records if r.value is not None)
        return [e for e in decoded if getattr(e, "device_id", None) == device]

    return mine(await read_topic(broker.bootstrap, f"{worker.prefix}.events", enough))


async def opened(broker: EmbeddedBroker, worker: WorkerProcess, device: str, text: str) -> str:
    """A sealed fingerprint opened with the device's key, as the CLI opens it (the keys
    topic and the workers' key-encryption key): the fingerprint itself is sealed too."""
    settings = load_settings(worker.environment())
    keys = await read_snapshot(settings, settings.kafka_at(broker.bootstrap))
    assert keys is not None
    return keys.open(APP, device, "user_token_fingerprint", text)


async def test_given_a_user_token_header_then_only_its_fingerprint_is_kept_anywhere(
    broker: EmbeddedBroker, expendable_worker: WorkerProcess
) -> None:
    worker = expendable_worker
    device, token = f"tok-{uuid.uuid4().hex[:8]}", f"session-{uuid.uuid4().hex}"
    user = {"user-token": token}

    # When a device registers and unregisters with the SDK's user-token header
    url = worker.url("messaging/registrations")
    status, body = await call("POST", url, json=registration(device), headers=user)
    assert status == 200, body
    status, body = await call("DELETE", f"{url}/{device}", headers=user)
    assert status == 200, body

    # Then both events carry the keyed fingerprint, bound to the app, sealed with the device's
    # key (the same text: sealing is deterministic), and never the token
    registered, unregistered = await events_of(broker, worker, device, 2)
    fingerprint = KEYS.fingerprint(APP, token)
    assert fingerprint.startswith("t1:")
    assert len(fingerprint) == len("t1:") + 22
    assert isinstance(registered, DeviceRegistered)
    assert isinstance(unregistered, DeviceUnregistered)
    kept = registered.user_token_fingerprint
    assert kept is not None
    assert sealed.is_sealed(kept)
    assert (registered.user_token, unregistered.user_token) == (None, None)
    assert unregistered.user_token_fingerprint == kept
    assert await opened(broker, worker, device, kept) == fingerprint
    assert KEYS.matches(APP, token, fingerprint)
    assert not KEYS.matches("app-b", token, fingerprint)

    # And the token is nowhere devreg writes: not in the commands it sent, the events, the
    # outcomes, its stores on disk, the history it answers, nor its log
    raw = token.encode()
    for topic, enough in (("commands", 2), ("events", 2), ("outcomes", 2)):
        assert raw not in await topic_bytes(broker, f"{worker.prefix}.{topic}", enough), topic
    assert fingerprint.encode() not in stored_bytes(worker.data_dir)  # sealed there too
    assert raw not in stored_bytes(worker.data_dir)
    history = worker.url(f"messaging/registrations/{device}/history")
    status, page = await call("GET", history, headers=admin_headers())
    assert status == 200, page
    # (opened for the answer: the page shows what the sealed text holds)
    assert [e.get("user_token_fingerprint") for e in page["events"]] == [fingerprint] * 2
    assert token not in str(page)
    assert token not in worker.log()


async def test_given_a_kafka_command_with_a_raw_token_then_the_event_holds_its_fingerprint(
    broker: EmbeddedBroker, expendable_worker: WorkerProcess
) -> None:
    worker = expendable_worker
    device, token = f"kt-{uuid.uuid4().hex[:8]}", f"session-{uuid.uuid4().hex}"
    # Given a command a Kafka publisher wrote with the raw session token in it
    command = RegisterDevice(
        command_id=uuid.uuid4().hex,
        app_id=APP,
        device_id=device,
        issued_at=now_ms(),
        user_token=token,
        device_token="t",
        os="IOS",
        os_version="17",
    )
    await publish_commands(broker.bootstrap, f"{worker.prefix}.commands", [command])

    # Then its event carries the fingerprint the HTTP edge would have made, not the token
    [registered] = await events_of(broker, worker, device, 1)
    assert isinstance(registered, DeviceRegistered)
    assert registered.user_token is None
    kept = registered.user_token_fingerprint
    assert kept is not None
    assert await opened(broker, worker, device, kept) == KEYS.fingerprint(APP, token)
    # And only the commands topic holds the token: what the publisher wrote (docs/security.md)
    assert token.encode() in await topic_bytes(broker, f"{worker.prefix}.commands", 1)
    assert token.encode() not in await topic_bytes(broker, f"{worker.prefix}.outcomes", 1)
    await wait_for(lambda: token.encode() not in stored_bytes(worker.data_dir), 5, "no token")


async def test_given_an_old_event_with_a_raw_token_then_every_output_redacts_it(
    broker: EmbeddedBroker, expendable_worker: WorkerProcess
) -> None:
    worker = expendable_worker
    device, token = f"old-{uuid.uuid4().hex[:8]}", f"session-{uuid.uuid4().hex}"
    # Given an event as devreg wrote them before fingerprints: the raw token in it
    old = seal(
        DeviceRegistered(
            event_id=event_id(APP, f"old-{device}", 0),
            app_id=APP,
            version=1,
            occurred_at=now_ms(),
            command_id=f"old-{device}",
            prev_hash="",
            device_id=device,
            device_token="t",
            os="IOS",
            os_version="17",
            channels=("news",),
            registration_ids={"news": registration_id(APP, device, "news")},
            user_token=token,
        )
    )
    key = partition_key(APP, device)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        partition = key_partition(key, list(range(3)), list(range(3)))
        topic = f"{worker.prefix}.events"
        await producer.send_and_wait(topic, encode(old), key=key, partition=partition)
    finally:
        await producer.stop()

    # When it is read back through the admin history route, replay and the CLI's history
    history = worker.url(f"messaging/registrations/{device}/history")

    async def page() -> dict[str, object] | None:
        status, body = await call("GET", history, headers=admin_headers())
        return body if status == 200 else None

    answer = await wait_for(page, 20, "the old event in the projection")
    code, replayed, _ = await devreg(worker, "replay", "--app", APP, "--device", device)
    assert code == 0
    code, checked, _ = await devreg(worker, "history", APP, device)

    # Then each shows the event with its token redacted, and the chain (checked on the log,
    # before redacting) intact
    assert code == 0, checked
    assert [e["user_token"] for e in answer["events"]] == [REDACTED]  # type: ignore[index]
    for output in (str(answer).encode(), replayed, checked):
        assert token.encode() not in output
        assert REDACTED.encode() in output
    assert b'"intact":true' in checked
