"""The event loop every devreg process runs on.

uvloop (libuv) instead of asyncio's selector loop: devreg's hot paths are socket I/O on one
loop (HTTP connections, the Kafka producer and consumers) and aiosqlite's thread handoffs.
Measured with `python -m bench --quick --only freshness,ingest` on the 2-core machine:
freshness p50 at 1k/s 416 → 104 ms, ingest 2.2k-3.8k → 4.1k commands/s. `DEVREG_EVENT_LOOP=
asyncio` keeps the standard loop, to rule uvloop out when debugging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if choice == "asyncio":
        return asyncio.new_event_loop
    import uvloop  # imported here: `asyncio` must work without it

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """asyncio.run() on the loop chosen by `Settings.event_loop`."""
    with asyncio.Runner(loop_factory=_factory(choice)) as runner:
        return runner.run(main)
