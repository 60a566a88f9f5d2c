"""A page of 100 devices on a channel (the push-targeting query), over HTTP.

devreg:   one connection, one request at a time (latency, not load): GET
          …/messaging/channels/news/devices?limit=100&cursor=<random depth> on the ingested
          population (every device is on "news").
baseline: the same keyset query (projections' channel_devices) with the stdlib sqlite3
          module, in this process, on the worker's projection file.
Measured only once the route exists (issue 3); until then the row says so.
"""

from __future__ import annotations

import base64
import random
import sqlite3
import time
from pathlib import Path

from bench import feed, load
from bench.ingest import population
from bench.report import Row, Target
from bench.session import Session, log
from bench.stack import ADMIN_KEY, API_KEY, APP_ID
from bench.stats import Spread, percentile

PAGE = 100
CHANNEL = "news"
PAGE_QUERY = (
    "SELECT s.device_id, d.device_token, d.os, d.os_version, s.registration_id, s.expiration"
    " FROM subscriptions s INDEXED BY subscriptions_by_channel"
    " JOIN devices d ON d.app_id = s.app_id AND d.device_id = s.device_id"
    " WHERE s.app_id = ? AND s.channel = ? AND s.device_id > ?"
    " AND (s.expiration IS NULL OR s.expiration > ?)"
    " ORDER BY s.device_id LIMIT ?"
)
NOT_YET = "not yet measured (feature lands in issue 3)"


def cursor(device_id: str) -> str:
    return base64.urlsafe_b64encode(device_id.encode()).decode().rstrip("=")


ADMIN = {"X-Devreg-Admin-Key": ADMIN_KEY}


def path(after: str | None) -> str:
    page = f"/{APP_ID}/{API_KEY}/messaging/channels/{CHANNEL}/devices?limit={PAGE}"
    return page + (f"&cursor={cursor(after)}" if after else "")


def sqlite_pages(projection: Path, devices: int, seconds: float) -> load.Summary:
    pick = random.Random(5).randrange

    def page(db: sqlite3.Connection, now_ms: int) -> None:
        after = feed.device_id(pick(devices))
        db.execute(PAGE_QUERY, (APP_ID, CHANNEL, after, now_ms, PAGE)).fetchall()

    return feed.timed_queries(projection, seconds, page)


async def http_pages(port: int, devices: int, seconds: float) -> load.Summary:
    conn = await load.connect("127.0.0.1", port)
    pick = random.Random(3).randrange
    latencies: list[float] = []
    errors = 0
    clock = time.perf_counter
    try:
        started = clock()
        while (begin := clock()) - started < seconds:
            answer = await conn.request(
                load.get(path(feed.device_id(pick(devices))), headers=ADMIN)
            )
            latencies.append((clock() - begin) * 1000)
            errors += answer.status != 200
        elapsed = clock() - started
    finally:
        conn.close()
    ok = len(latencies) - errors
    return load.Summary(ok / elapsed, percentile(latencies, 50), percentile(latencies, 99), errors)


async def route_exists(port: int) -> bool:
    conn = await load.connect("127.0.0.1", port)
    try:
        answer = await conn.request(load.get(path(feed.device_id(0)), headers=ADMIN))
    finally:
        conn.close()
    log.info("channel page probe: %d %s", answer.status, answer.body[:200])
    return answer.status == 200


def placeholder(what: str) -> list[Row]:
    return [
        Row(
            bench="channel",
            what=what,
            metric=metric,
            devreg=Spread.of([]),
            note=NOT_YET,
            target=Target("<=", 5) if metric == "p99 ms" else None,
        )
        for metric in ("p50 ms", "p99 ms")
    ]


async def run(session: Session) -> list[Row]:
    pop = await population(session)
    stack, devices = pop.stack, pop.devices
    what = f"Devices-on-channel page of {PAGE}, {devices:,} on the channel, 1 conn"
    if not await route_exists(stack.worker.port):
        return placeholder(what)
    seconds = session.sizes.http_duration_s / 2
    http: list[load.Summary] = []
    direct: list[load.Summary] = []
    for _ in range(session.sizes.runs):
        async with session.profiled("channel", stack.worker.pid):
            http.append(await http_pages(stack.worker.port, devices, seconds))
        direct.append(sqlite_pages(stack.worker.projection_path, devices, min(seconds, 3.0)))
        log.info("channel page: http %s, sqlite3 %s", http[-1], direct[-1])
    if errors := sum(s.errors for s in http):
        session.note(f"channel page: {errors} answers were not 200")
    return [
        Row(
            bench="channel",
            what=what,
            metric=metric,
            devreg=Spread.of([getattr(s, figure) for s in http]),
            baseline=Spread.of([getattr(s, figure) for s in direct]),
            baseline_what="in-process sqlite3",
            target=target,
        )
        for figure, metric, target in (
            ("rate", "req/s", None),
            ("p50_ms", "p50 ms", None),
            ("p99_ms", "p99 ms", Target("<=", 5)),
        )
    ]
