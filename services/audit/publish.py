"""`devreg publish`: send one command to the commands topic and wait for its outcome.

The command processor answers on the outcomes partition with the command's own number, so the
outcome is looked for there only, from the end offset read before sending (a lower bound on
the embedded broker, which only means reading a few older outcomes that do not match).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgspec
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from events import AnyCommand, Outcome, decode_command, decode_outcome, encode
from events.identity import partition_key
from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.log.reader import LogError, LogReader


class PublishError(RuntimeError):
    """The command was not sent, or no outcome came back in time."""


def command_from_json(raw: bytes, now_ms: int) -> AnyCommand:
    """Validate a command given as JSON; fill in `command_id` and `issued_at` if absent."""
    try:
        fields: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise PublishError(f"not JSON: {exc}") from exc
    if not isinstance(fields, dict):
        raise PublishError("a command is a JSON object with a `type`, e.g. register-device/1")
    fields.setdefault("command_id", uuid.uuid4().hex)
    fields.setdefault("issued_at", now_ms)
    try:
        return decode_command(msgspec.json.encode(fields))
    except msgspec.ValidationError as exc:
        raise PublishError(f"not a valid command: {exc}") from exc


async def publish(
    kafka: KafkaAccess, commands_topic: str, outcomes_topic: str, command: AnyCommand, wait_s: float
) -> Outcome:
    async with LogReader(kafka) as reader:
        outcome_tps = await reader.partitions(outcomes_topic)
        before = await reader.end_offsets(outcome_tps)
        producer = clients.producer(kafka)
        try:
            await producer.start()
            sent = await producer.send_and_wait(
                commands_topic,
                encode(command),
                key=partition_key(command.app_id, command.device_id),
            )
        except KafkaError as exc:
            raise PublishError(f"the broker did not take the command: {exc!r}") from exc
        finally:
            await producer.stop()
        tp = TopicPartition(outcomes_topic, sent.partition)
        return await _outcome(reader, tp, before.get(tp, 0), command, wait_s)


async def _outcome(
    reader: LogReader, tp: TopicPartition, start: int, command: AnyCommand, wait_s: float
) -> Outcome:
    deadline = time.monotonic() + wait_s

    async def find() -> Outcome:
        async for batch in reader.read({tp: start}, follow=True):
            for record in batch:
                outcome = decode_outcome(record.value or b"")
                if (outcome.app_id, outcome.command_id) == (command.app_id, command.command_id):
                    return outcome
        raise LogError("the outcomes topic ended")  # follow=True never ends

    try:
        return await asyncio.wait_for(find(), max(deadline - time.monotonic(), 0.001))
    except TimeoutError:
        raise PublishError(
            f"no outcome for command {command.command_id} within {wait_s:.0f}s: is a worker"
            " running? The command stays on the topic and will be decided when one is."
        ) from None
