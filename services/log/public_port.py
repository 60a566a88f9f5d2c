"""The embedded broker's port for everyone but devreg, held shut while its topics are renewed.

A renewal deletes and creates devreg's topics (services/log/rollover.py). The embedded Tansu
takes a produce sent around a topic's deletion into the topic created next, so a publisher
writing at that moment puts its records where the renewal must put the tail of the kept log
(docs/design.md §10). devreg cannot ask a publisher to wait, but it can stop carrying its
requests: in the embedded mode the broker listens on a port of its own, advertised as this
one, and other clients (kcat, confluent-kafka, kafkajs, `devreg publish`) reach it through
this relay, a frame at a time. devreg's own clients connect to the broker directly
(services/kafka/clients.py, `connect_directly`), so the renewal itself is never held.

`held()` stops forwarding requests (a held client waits; TCP pushes back on it), waits until
every produce already forwarded that expects an answer has been answered, and opens again on
the way out. A request that waited goes to the fresh topics, after the tail.

Nothing here parses more of the protocol than a frame's size, a request's header and a
produce's `acks` (a produce with acks=0 gets no answer, so none is awaited); a frame larger
than Kafka's own default limit (socket.request.max.bytes, 100 MiB) closes its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
from collections.abc import AsyncIterator

log = logging.getLogger(__name__)

PRODUCE = 0
MAX_FRAME = 100 << 20
_SIZE = struct.Struct(">i")
_HEADER = struct.Struct(">hhih")  # api key, api version, correlation id, client id length


class FrameTooLarge(ConnectionError):
    """A peer announced a frame beyond MAX_FRAME."""


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = _SIZE.unpack(await reader.readexactly(4))
    if not 0 <= size <= MAX_FRAME:
        raise FrameTooLarge(f"a frame of {size} bytes")
    return await reader.readexactly(size)


def _uvarint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def answer_expected(frame: bytes) -> int | None:
    """The correlation id of a produce request that the broker will answer (acks is not 0);
    None for any other request. A frame too short or malformed to read counts as answered:
    the broker closes the connection on it, and the connection's waits go with it."""
    try:
        api_key, version, correlation, client_id = _HEADER.unpack_from(frame)
        if api_key != PRODUCE:
            return None
        at = _HEADER.size + max(client_id, 0)
        if version >= 9:  # flexible versions: header tagged fields, compact strings
            fields, at = _uvarint(frame, at)
            for _ in range(fields):
                _tag, at = _uvarint(frame, at)
                size, at = _uvarint(frame, at)
                at += size
            transactional, at = _uvarint(frame, at)
            at += max(transactional - 1, 0)
        elif version >= 3:
            (transactional,) = struct.unpack_from(">h", frame, at)
            at += 2 + max(transactional, 0)
        (acks,) = struct.unpack_from(">h", frame, at)
    except (struct.error, IndexError):
        return None
    return None if acks == 0 else correlation


class PublicPort:
    """A relay from `host:port` to the broker at `upstream`; `held()` shuts it for a moment."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self._open = asyncio.Event()
        self._open.set()
        self._answered = asyncio.Event()
        self._answered.set()
        self._unanswered: dict[int, set[int]] = {}  # per connection: produces awaiting answers
        self._ids = itertools.count()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    @contextlib.asynccontextmanager
    async def held(self, within_s: float = 10.0) -> AsyncIterator[None]:
        """No request reaches the broker from others while the block runs; it starts once
        their produces already sent are answered (or after `within_s`, said in the log: the
        renewal then meets what they wrote, services/log/foreign.py)."""
        self._open.clear()
        try:
            try:
                await asyncio.wait_for(self._answered.wait(), within_s)
            except TimeoutError:
                log.warning(
                    "the broker's public port is held, but %d produces sent through it were"
                    " not answered within %.0f s",
                    sum(len(s) for s in self._unanswered.values()),
                    within_s,
                )
            yield
        finally:
            self._open.set()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        conn = next(self._ids)
        self._unanswered[conn] = set()
        up_w: asyncio.StreamWriter | None = None
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
            await asyncio.gather(
                self._requests(conn, client_r, up_w), self._answers(conn, up_r, client_w)
            )
        except FrameTooLarge as exc:
            log.warning("closed a connection to the broker's public port: %s", exc)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, struct.error):
            pass  # either side went away (or the broker answered a scrap): both are closed
        finally:
            del self._unanswered[conn]  # its waits go with it
            self._check_answered()
            for writer in (client_w, up_w):
                if writer is not None:
                    writer.close()
            self._connections.discard(task)

    async def _requests(
        self, conn: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            frame = await _read_frame(reader)
            while not self._open.is_set():  # shut again before this one woke: wait again
                await self._open.wait()
            correlation = answer_expected(frame)
            if correlation is not None:
                self._unanswered[conn].add(correlation)
                self._answered.clear()
            writer.write(_SIZE.pack(len(frame)) + frame)
            await writer.drain()

    async def _answers(
        self, conn: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            frame = await _read_frame(reader)
            (correlation,) = _SIZE.unpack_from(frame)
            waiting = self._unanswered[conn]
            if correlation in waiting:
                waiting.discard(correlation)
                self._check_answered()
            writer.write(_SIZE.pack(len(frame)) + frame)
            await writer.drain()

    def _check_answered(self) -> None:
        if not any(self._unanswered.values()):
            self._answered.set()
