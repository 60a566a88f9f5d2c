"""Rebuild of the projection from the log (`devreg rebuild`), on the ingested population.

devreg:   `python -m services rebuild --offline --quiet` with the population's topics and a
          fresh data directory (the live worker's files are not touched). The figure is the
          events/s the command reports for its fold (read + fold + write); the wall time of
          the whole command, process start-up included, is in the notes.
baseline: a plain aiokafka consumer reading the same events topic from offset 0. A note gives
          one more run folded by one process (`--processes 1`), for comparison.
memory:   the peak of the resident memory of the command and its processes together (a
          rebuild spreads its fold over processes, services/rebuild/parallel.py), sampled
          every 200 ms.
Measured only once the subcommand exists (issue 5); until then the row says so.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import msgspec

from bench import reading
from bench.ingest import population
from bench.memory import tree_rss_kib
from bench.report import Row, Target
from bench.session import Session, log
from bench.stack import Stack
from bench.stats import Spread

NOT_YET = "not yet measured (feature lands in issue 5)"


RSS_EVERY_S = 0.2  # a /proc scan each time: light enough not to slow the rebuild


class Rebuilt(msgspec.Struct, frozen=True):
    events: int
    events_per_s: float  # as reported by the command
    processes: int = 1  # that folded the log at once, as reported
    wall_s: float = 0.0
    peak_rss_mib: float = 0.0  # the command and its processes together


async def peak_rss_kib(pid: int, running: asyncio.Future[Any]) -> int:
    peak = 0
    while not running.done():
        peak = max(peak, await asyncio.to_thread(tree_rss_kib, pid))
        await asyncio.wait([running], timeout=RSS_EVERY_S)
    return peak


async def cli_has_rebuild() -> bool:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services",
        "--help",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return "rebuild" in out.decode()


async def rebuild_once(stack: Stack, run: int, *args: str) -> Rebuilt:
    worker = stack.worker
    env = worker.environment()
    env["DEVREG_DATA_DIR"] = str(worker.data_dir.with_name(f"{worker.prefix}-rebuild{run}"))
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services",
        "rebuild",
        "--offline",
        "--quiet",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    running = asyncio.ensure_future(process.communicate())
    peak_kib = await peak_rss_kib(process.pid, running)
    out, err = await running
    wall_s = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"devreg rebuild failed ({process.returncode}):\n{err.decode()[-3000:]}")
    report = msgspec.json.decode(out.strip().splitlines()[-1], type=Rebuilt)
    return msgspec.structs.replace(report, wall_s=wall_s, peak_rss_mib=peak_kib / 1024)


async def run(session: Session) -> list[Row]:
    what = "Rebuild of the projection from the log"
    if not await cli_has_rebuild():
        return [
            Row(
                bench="rebuild",
                what=what,
                metric="events/s",
                devreg=Spread.of([]),
                note=NOT_YET,
                target=Target(">=", 60_000),
            )
        ]
    pop = await population(session)
    rebuilt: list[Rebuilt] = []
    raw: list[float] = []
    for i in range(session.sizes.runs):
        rebuilt.append(await rebuild_once(pop.stack, i))
        events = rebuilt[-1].events
        topic = pop.stack.worker.events_topic
        raw.append(events / await reading.consume_count(pop.stack.bootstrap, topic, events, 120))
        log.info("rebuild: %s, raw read %.0f events/s", rebuilt[-1], raw[-1])
    events = rebuilt[-1].events
    wall = Spread.of([r.events / r.wall_s for r in rebuilt]).median
    alone = await rebuild_once(pop.stack, session.sizes.runs, "--processes", "1")
    session.note(
        f"rebuild of {events:,} events: {wall:,.0f} events/s over the whole command's wall time"
        " (Python start-up, connecting, the swap included), folded by"
        f" {rebuilt[-1].processes} processes at once; one run by one process (`--processes 1`):"
        f" {alone.events_per_s:,.0f} events/s, peak RSS {alone.peak_rss_mib:,.0f} MiB"
    )
    return [
        Row(
            bench="rebuild",
            what=f"{what}, {events:,} events (`rebuild --offline`, as reported)",
            metric="events/s",
            devreg=Spread.of([r.events_per_s for r in rebuilt]),
            baseline=Spread.of(raw),
            baseline_what="raw aiokafka read",
            target=Target(">=", 60_000),
        ),
        Row(
            bench="rebuild",
            what=f"Rebuild peak RSS, {events:,} events (the command and its processes together)",
            metric="MiB",
            devreg=Spread.of([r.peak_rss_mib for r in rebuilt]),
        ),
    ]
