"""An HTTP/1.1 load generator on raw asyncio protocols.

aiohttp's client spends several times the CPU of a trivial aiohttp handler per request, so on
this 2-core machine it, not the server, would be the bottleneck. This one sends pre-formatted
request bytes over keep-alive connections and parses just the status line and Content-Length,
so the server under test gets most of a core (it measures the same figures as wrk: see
docs/benchmarks.md). Latency is measured from the
moment the request is written (closed loop), or from its scheduled time (open loop, so a slow
server cannot hide its slowness by delaying the next request: no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import msgspec

from bench.stats import percentile

RequestFactory = Callable[[int], bytes]  # request number -> the request's bytes


class Response(msgspec.Struct, frozen=True):
    status: int
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("connection closed"))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).lower()
        at = head.find(b"content-length:")
        if at < 0:  # aiohttp always sends it for a web.Response; chunked is not expected
            self._fail(ValueError(f"response without Content-Length: {head[:200]!r}"))
            return
        line_end = head.find(b"\r\n", at)
        length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
        total = end + 4 + length
        if len(self._buffer) < total:
            return
        body = bytes(self._buffer[end + 4 : total])
        del self._buffer[:total]
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(Response(int(head[9:12]), body))

    def request(self, data: bytes) -> asyncio.Future[Response]:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(data)
        return self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def connect(host: str, port: int) -> _Connection:
    _, protocol = await asyncio.get_running_loop().create_connection(_Connection, host, port)
    return protocol


def post_json(path: str, body: bytes, host: str = "127.0.0.1") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def get(path: str, host: str = "127.0.0.1", headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


class Summary(msgspec.Struct, frozen=True):
    """One load test: successful requests/s and latency percentiles."""

    rate: float
    p50_ms: float
    p99_ms: float
    errors: int


class LoadResult(msgspec.Struct, frozen=True):
    requests: int  # answered inside the measurement window
    statuses: dict[int, int]
    elapsed_s: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        ok = self.statuses.get(200, 0)
        return ok / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def errors(self) -> int:
        return self.requests - self.statuses.get(200, 0)

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def summary(self) -> Summary:
        return Summary(self.rate, self.p(50), self.p(99), self.errors)


async def closed_loop(
    port: int,
    connections: int,
    duration_s: float,
    make_request: RequestFactory,
    warmup_s: float = 1.0,
    host: str = "127.0.0.1",
) -> LoadResult:
    """`connections` clients, each sending its next request as soon as the last is answered.

    Requests answered during the first `warmup_s` are not counted."""
    conns = [await connect(host, port) for _ in range(connections)]
    counter = iter(range(1 << 62))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    start = time.perf_counter()
    measure_from, stop_at = start + warmup_s, start + warmup_s + duration_s
    clock = time.perf_counter

    async def client(conn: _Connection) -> None:
        while (sent := clock()) < stop_at:
            response = await conn.request(make_request(next(counter)))
            done = clock()
            if sent >= measure_from:
                latencies.append((done - sent) * 1000)
                statuses[response.status] += 1

    try:
        await asyncio.gather(*(client(c) for c in conns))
    finally:
        for conn in conns:
            conn.close()
    return LoadResult(len(latencies), dict(statuses), duration_s, latencies)


class Pool:
    """Keep-alive connections handed out one request at a time (open-loop load): a new one
    is opened when none is idle, up to `limit`; past it, requests wait for a free one."""

    def __init__(self, port: int, host: str = "127.0.0.1", limit: int = 512):
        self._port, self._host, self._limit = port, host, limit
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()
        self._all: list[_Connection] = []

    async def request(self, data: bytes) -> Response:
        if self._idle.empty() and len(self._all) < self._limit:
            conn = await connect(self._host, self._port)
            self._all.append(conn)
        else:
            conn = await self._idle.get()
        try:
            response = await conn.request(data)
        except BaseException:
            self._all.remove(conn)
            conn.close()
            raise
        self._idle.put_nowait(conn)
        return response

    @property
    def size(self) -> int:
        return len(self._all)

    def close(self) -> None:
        for conn in self._all:
            conn.close()


async def open_loop(
    rate: float, duration_s: float, task: Callable[[int, float], asyncio.Future[None]]
) -> int:
    """Start `task(n, scheduled_at)` at `rate` per second for `duration_s`, whatever the
    answers' speed; wait for them all. Returns how many were started."""
    total = round(rate * duration_s)
    start = time.perf_counter()
    running: list[asyncio.Future[None]] = []
    for n in range(total):
        scheduled = start + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        running.append(task(n, scheduled))
    await asyncio.gather(*running)
    return total


async def load_test(
    port: int,
    connections: int,
    duration_s: float,
    warmup_s: float,
    make_request: RequestFactory,
    wrk_url_and_lua: tuple[str, str] | None = None,
) -> Summary:
    """A closed-loop test with bench.load, or with wrk when given its URL and Lua script."""
    if wrk_url_and_lua is not None:
        from bench import wrk

        return await wrk.run(*wrk_url_and_lua, connections, duration_s)
    result = await closed_loop(port, connections, duration_s, make_request, warmup_s)
    return result.summary()
