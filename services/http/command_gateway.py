"""Submitting a command from HTTP: send it to Kafka, wait for its outcome and its visibility."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from events import AnyCommand, Outcome, encode
from events.identity import partition_key
from projections.positions import Record
from services.stream.visibility import Visibility

log = logging.getLogger(__name__)


class Unavailable(RuntimeError):
    """Kafka did not acknowledge the command: nothing was accepted."""


class NotVisibleInTime(RuntimeError):
    """Kafka acknowledged the command, but its effect was not visible within the bound."""


def new_command_id() -> str:
    return uuid.uuid4().hex


class CommandGateway:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        visibility: Visibility,
        commands_topic: str,
        visible_timeout_ms: int,
        acknowledged: Callable[[Record], None] = lambda record: None,
    ):
        self._producer = producer
        self._visibility = visibility
        self._topic = commands_topic
        self._timeout_s = visible_timeout_ms / 1000
        # Told the record the log holds once Kafka acknowledged it: the hand-off
        # (services/stream/hand_off.py) decides it from there.
        self._acknowledged = acknowledged

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    async def submit(self, command: AnyCommand) -> Outcome:
        """Send `command`; return its outcome once its events are visible to queries.

        One deadline covers the three waits (Kafka's acknowledgement, the decision, the
        projection): one timer per request, where a `wait_for` each cost a task each."""
        decided = self._visibility.expect(command.app_id, command.command_id)
        value = encode(command)
        key = partition_key(command.app_id, command.device_id)
        acked = False
        try:
            async with asyncio.timeout(self._timeout_s):
                try:
                    meta = await self._producer.send_and_wait(self._topic, value, key=key)
                except KafkaError as exc:
                    raise Unavailable(f"Kafka did not acknowledge the command: {exc!r}") from exc
                acked = True
                record = Record(
                    self._topic, meta.partition, meta.offset, meta.timestamp, key, value
                )
                if log.isEnabledFor(logging.DEBUG):
                    self._log_sent(command, record)
                self._acknowledged(record)
                result = await decided
                if result.last_event is not None:
                    await self._visibility.wait_applied(*result.last_event)
            return result.outcome
        except TimeoutError as exc:
            if not acked:
                raise Unavailable(
                    f"Kafka did not acknowledge the command within {self._timeout_s:.1f}s"
                ) from exc
            raise NotVisibleInTime(
                f"command {command.command_id} was accepted by Kafka but is not visible"
                f" after {self._timeout_s:.1f}s; it will still be applied, retry the GET"
            ) from exc
        finally:
            self._visibility.forget(command.app_id, command.command_id)

    @staticmethod
    def _log_sent(command: AnyCommand, record: Record) -> None:
        log.debug(
            "command %s sent",
            type(command).__name__,
            extra={
                "command_id": command.command_id,
                "app_id": command.app_id,
                "device_id": command.device_id,
                "partition": record.partition,
                "offset": record.offset,
            },
        )
