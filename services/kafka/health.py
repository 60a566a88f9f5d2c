"""Broker reachability, watched continuously so readiness and errors tell the truth."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)
PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 1.5


class BrokerHealth:
    def __init__(self, producer: AIOKafkaProducer):
        self._producer = producer
        self.reachable = True

    async def probe(self) -> bool:
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), PROBE_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError):
            return False
        return True

    async def run(self) -> None:
        while True:
            reachable = await self.probe()
            if reachable != self.reachable:
                if reachable:
                    log.warning("Kafka is reachable again")
                else:
                    log.error("Kafka is unreachable: not ready, commands answer 503")
            self.reachable = reachable
            await asyncio.sleep(PROBE_EVERY_S)
