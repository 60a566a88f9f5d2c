"""Submitting a command from HTTP: send it to Kafka, wait for its outcome and its visibility."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from events import AnyCommand, Outcome, encode
from events.identity import partition_key
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
    ):
        self._producer = producer
        self._visibility = visibility
        self._topic = commands_topic
        self._timeout_s = visible_timeout_ms / 1000

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    async def submit(self, command: AnyCommand) -> Outcome:
        """Send `command`; return its outcome once its events are visible to queries."""
        deadline = time.monotonic() + self._timeout_s
        decided = self._visibility.expect(command.app_id, command.command_id)
        try:
            try:
                await asyncio.wait_for(
                    self._producer.send_and_wait(
                        self._topic,
                        encode(command),
                        key=partition_key(command.app_id, command.device_id),
                    ),
                    self._timeout_s,
                )
            except (KafkaError, TimeoutError) as exc:
                raise Unavailable(f"Kafka did not acknowledge the command: {exc!r}") from exc
            log.debug(
                "command %s sent",
                type(command).__name__,
                extra={
                    "command_id": command.command_id,
                    "app_id": command.app_id,
                    "device_id": command.device_id,
                },
            )
            try:
                result = await asyncio.wait_for(decided, max(deadline - time.monotonic(), 0.001))
                if result.last_event is not None:
                    await asyncio.wait_for(
                        self._visibility.wait_applied(*result.last_event),
                        max(deadline - time.monotonic(), 0.001),
                    )
            except TimeoutError as exc:
                raise NotVisibleInTime(
                    f"command {command.command_id} was accepted by Kafka but is not visible"
                    f" after {self._timeout_s:.1f}s; it will still be applied, retry the GET"
                ) from exc
            return result.outcome
        finally:
            self._visibility.forget(command.app_id, command.command_id)
