"""Stopping a worker's parts within a time budget (DEVREG_STOP_TIMEOUT_MS).

A part that does not stop in time is abandoned: faust's consumer, told to stop while Kafka
does not answer, waits on for good (measured: a worker still running 90 s after SIGTERM). The
parts after it still stop, the SQLite stores last, each given at least a second even once the
budget is spent. Abandoning is as safe as a crash (docs/reliability.md 1 and 12): a restart
resumes from the stores.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)

LAST_S = 1.0  # what is left to stop once the budget is spent (the stores) still gets this


async def stop_one(resource: Any) -> None:
    if isinstance(resource, asyncio.Future):
        resource.cancel()
        await asyncio.gather(resource, return_exceptions=True)
    elif isinstance(resource, web.AppRunner):
        await resource.cleanup()
    elif isinstance(resource, AIOKafkaProducer):
        await resource.stop()
    elif hasattr(resource, "close"):
        await resource.close()
    else:
        await resource.stop()


async def stop_all(resources: Sequence[Any], budget_s: float) -> list[str]:
    """Stop `resources` one after the other within `budget_s`; what was abandoned, by name."""
    deadline = time.monotonic() + budget_s
    abandoned: list[str] = []
    for resource in resources:
        stopping = asyncio.ensure_future(stop_one(resource))
        await asyncio.wait([stopping], timeout=max(deadline - time.monotonic(), LAST_S))
        if not stopping.done():
            stopping.cancel()  # not awaited: it may not even end when cancelled
            abandoned.append(repr(resource))
            log.error(
                "%r did not stop within DEVREG_STOP_TIMEOUT_MS (%d ms): abandoned",
                resource,
                budget_s * 1000,
            )
        elif not stopping.cancelled() and stopping.exception() is not None:
            log.error("error while stopping %r", resource, exc_info=stopping.exception())
    return abandoned


def exit_if_abandoned(abandoned: Sequence[str], code: int) -> int:
    """`code`, or, if a part was abandoned, the end of the process now: what was abandoned may
    never end (faust's consumer thread, a task deaf to cancellation), and the interpreter would
    wait for it at exit. Everything that holds data is closed by then (stop_all)."""
    if abandoned:
        log.error("exiting without waiting for %s", ", ".join(abandoned))
        logging.shutdown()
        os._exit(code)
    return code
