"""A gate the worker's writers pass through, closed while the embedded broker's partitions
are renewed (services/log/rollover.py): nothing may be written to a topic being recreated."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Gate:
    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._inside = 0

    @contextlib.asynccontextmanager
    async def passage(self) -> AsyncIterator[None]:
        """Wait while the gate is closed, then hold it open until the block is done."""
        await self._open.wait()
        self._inside += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._inside -= 1
            if not self._inside:
                self._idle.set()

    async def close(self) -> None:
        """Let no one new in, and return once everyone inside has left."""
        self._open.clear()
        await self._idle.wait()

    def open(self) -> None:
        self._open.set()
