"""Any worker answers any request: device requests go to the worker that owns the device's
partition (forwarded), channel queries ask every worker for its own partitions and merge."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp
from aiohttp import web
from yarl import URL

from events import rules
from services.http.wire import WireError
from services.stream.ownership import Ownership

log = logging.getLogger(__name__)
FORWARDED = "X-Devreg-Forwarded"  # a forwarded request is never forwarded again
LOCAL = "X-Devreg-Local"  # a fan-out sub-query: answer from this worker's partitions only
_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}
TIMEOUT = aiohttp.ClientTimeout(total=10)


def at_peer(peer: str, path_qs: URL) -> URL:
    """The same path and query on a peer, byte for byte as the client encoded them: built
    from the raw path, never from the decoded one (a '%3F' in a name must not become a
    query, nor '%41' a letter), and marked encoded so the client does not quote it again."""
    return URL(peer + str(path_qs), encoded=True)


def raw_path_qs(request: web.Request) -> URL:
    return URL(request.raw_path, encoded=True)


def _moving(partition: int) -> WireError:
    return WireError(
        rules.PARTITION_MOVING,
        f"partition {partition} is moving between workers (rebalance); retry shortly",
        503,
    )


class Forwarder:
    def __init__(self, ownership: Ownership, caught_up: Callable[[int], bool]):
        self.ownership = ownership
        self._caught_up = caught_up  # False while a partition just handed over catches up
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def to_owner(
        self, request: web.Request, app_id: str, device_id: str, body: bytes | None = None
    ) -> web.Response | None:
        """None when this worker owns the device; else the owner's answer to the request."""
        partition = self.ownership.partition_of(app_id, device_id)
        owner = self.ownership.owner(partition)
        if owner == self.ownership.url:
            if not self._caught_up(partition):
                raise WireError(
                    rules.PARTITION_MOVING,
                    f"partition {partition} was just handed to this worker, which is catching"
                    " up on it; retry shortly",
                    503,
                )
            return None
        if owner is None or FORWARDED in request.headers:
            raise _moving(partition)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        headers[FORWARDED] = self.ownership.url
        try:
            async with self.session().request(
                request.method, at_peer(owner, raw_path_qs(request)), data=body, headers=headers
            ) as answer:
                payload = await answer.read()
                return web.Response(
                    body=payload, status=answer.status, content_type=answer.content_type
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("owner %s of partition %d did not answer: %r", owner, partition, exc)
            raise _moving(partition) from exc

    def fan_out(self, request: web.Request) -> bool:
        return LOCAL not in request.headers and bool(self.ownership.peers())

    async def ask_peers(self, request: web.Request, path_qs: URL | None = None) -> list[bytes]:
        """The same GET on every other worker, answered from their own partitions."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        headers[LOCAL] = self.ownership.url

        async def ask(peer: str) -> bytes:
            url = at_peer(peer, path_qs or raw_path_qs(request))
            try:
                async with self.session().get(url, headers=headers) as answer:
                    if answer.status != 200:
                        raise WireError(
                            rules.PARTITION_MOVING, f"{peer} answered {answer.status}", 503
                        )
                    return await answer.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise WireError(
                    rules.PARTITION_MOVING, f"worker {peer} did not answer", 503
                ) from exc

        return list(await asyncio.gather(*(ask(peer) for peer in self.ownership.peers())))
