"""A reader of `/admin/{app}/live` for the tests: the server-sent events as (kind, data)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.support import WorkerProcess, admin_headers


class LiveStream:
    def __init__(self, worker: WorkerProcess, app_id: str = "app-a", **filters: str):
        self.url = worker.admin_url("live", app_id)
        self.headers = admin_headers(app_id)
        self.filters = filters
        self.messages: list[tuple[str, Any]] = []
        self._session: aiohttp.ClientSession | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.closed = False

    async def __aenter__(self) -> LiveStream:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._response = await self._session.get(
            self.url, headers=self.headers, params=self.filters, read_bufsize=1 << 20
        )
        assert self._response.status == 200, await self._response.text()
        assert self._response.headers["Content-Type"] == "text/event-stream"
        self._task = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        assert self._session is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        if self._response is not None:
            self._response.close()
        await self._session.close()

    async def _read(self) -> None:
        assert self._response is not None
        kind, data = "message", []
        try:
            async for raw in self._response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif not line and data:
                    self.messages.append((kind, json.loads("\n".join(data))))
                    kind, data = "message", []
                    self._changed.set()
        finally:
            self.closed = True
            self._changed.set()

    async def until(
        self, found: Callable[[list[tuple[str, Any]]], bool], deadline_s: float = 20.0
    ) -> list[tuple[str, Any]]:
        """The messages so far, once `found(messages)` holds; fails at the deadline."""

        async def seen() -> None:
            while not found(self.messages):
                if self.closed:
                    raise AssertionError(f"the stream ended first: {self.messages}")
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(seen(), deadline_s)
        return self.messages

    async def ready(self) -> None:
        await self.until(lambda ms: any(kind == "ready" for kind, _ in ms))

    def events(self) -> list[dict[str, Any]]:
        return [data["event"] for kind, data in self.messages if kind == "message"]
