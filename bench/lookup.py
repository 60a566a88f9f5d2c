"""GET by deviceId over HTTP, on a projection holding the ingested population.

devreg:   64 connections, closed loop, GET …/messaging/registrations/<random known device>.
baseline: the same point lookup (projections/device_lookup.py's query) with the stdlib
          sqlite3 module, in this process, on the worker's projection file (read-only).
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from bench import feed, load, wrk
from bench.ingest import population
from bench.report import Row, Target
from bench.session import Session, log
from bench.stack import APP_ID, describe_cpu
from bench.stats import Spread
from projections import device_lookup

CONNECTIONS = 64
DEVICE_QUERY = device_lookup.SQL  # the very query the worker runs


def sqlite_lookups(projection: Path, devices: int, seconds: float) -> load.Summary:
    """Point lookups of random devices for `seconds`: lookups/s and per-lookup latency."""
    pick = random.Random(7).randrange

    def lookup(db: sqlite3.Connection, now_ms: int) -> None:
        rows = db.execute(DEVICE_QUERY, (APP_ID, feed.device_id(pick(devices)), now_ms))
        if not rows.fetchall():
            raise RuntimeError("a device of the population is missing from the projection")

    return feed.timed_queries(projection, seconds, lookup)


async def run(session: Session) -> list[Row]:
    pop = await population(session)
    stack, devices = pop.stack, pop.devices
    path = stack.worker.registrations_path
    pick = random.Random(11).randrange
    sizes = session.sizes
    http: list[load.Summary] = []
    direct: list[load.Summary] = []
    for i in range(sizes.runs):
        wrk_args = None
        if session.wrk:
            lua = wrk.GET_LUA.format(devices=devices, path=path)
            wrk_args = (f"http://127.0.0.1:{stack.worker.port}{path}/device-00000000", lua)
        async with session.profiled("get", stack.worker.pid):
            meter = stack.cpu_meter().start()
            http.append(
                await load.load_test(
                    stack.worker.port,
                    CONNECTIONS,
                    sizes.http_duration_s,
                    sizes.http_warmup_s,
                    lambda n: load.get(f"{path}/{feed.device_id(pick(devices))}"),
                    wrk_args,
                )
            )
            cpu = meter.stop()
        if i == 0:
            session.note(f"GET by id, {CONNECTIONS} connections, CPU (cores): {describe_cpu(cpu)}")
        direct.append(
            sqlite_lookups(stack.worker.projection_path, devices, min(3.0, sizes.http_duration_s))
        )
        log.info("lookup: http %s, sqlite3 %s", http[-1], direct[-1])
    errors = sum(s.errors for s in http)
    if errors:
        session.note(f"GET by id: {errors} answers were not 200")
    what = f"GET by deviceId, {devices:,} devices, {CONNECTIONS} conn"
    rows = []
    for figure, metric, target in (
        ("rate", "req/s", Target(">=", 12_000)),
        ("p50_ms", "p50 ms", None),
        ("p99_ms", "p99 ms", Target("<=", 10)),
    ):
        rows.append(
            Row(
                bench="get",
                what=what,
                metric=metric,
                devreg=Spread.of([getattr(s, figure) for s in http]),
                baseline=Spread.of([getattr(s, figure) for s in direct]),
                baseline_what="in-process sqlite3",
                target=target,
            )
        )
    return rows
