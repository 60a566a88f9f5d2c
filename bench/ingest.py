"""End-to-end sustained ingest, and the worker's memory once it is done.

devreg:   N RegisterDevice commands (new devices, channel "news") published straight to
          `<prefix>.commands` while the worker runs, until every one is visible in the
          projection. commands/s = N / (first send → all visible).
baseline: a plain aiokafka consumer reading the same N records from the same topic: how fast
          records can leave the broker into a Python process at all.
memory:   VmRSS and VmHWM (peak) of the worker process once all N are visible.

The last run's stack stays up (when nothing else is kept) as the population the query
benchmarks (GET by id, channel pages, rebuild) read from.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from bench import feed, reading
from bench.report import Row, Target
from bench.session import Population, Session, log
from bench.stack import PARTITIONS, Stack, describe_cpu
from bench.stats import Spread


class IngestRun(msgspec.Struct, frozen=True):
    rate: float  # commands/s, first send to all visible
    publish_rate: float  # commands/s acknowledged by Kafka
    baseline_rate: float  # records/s of a plain consumer
    rss_mib: float
    hwm_mib: float
    cpu: dict[str, float]  # cores used per process while ingesting


def deadline_s(n: int) -> float:
    return 120 + n / 100


async def ingest(session: Session, stack: Stack, n: int) -> IngestRun:
    """Publish n new devices to a running stack and wait until the projection shows them."""
    commands = feed.prepare(n, PARTITIONS, feed.registration())
    worker = stack.worker
    async with session.profiled(f"ingest-{n}", worker.pid):
        meter = stack.cpu_meter().start()
        started = time.perf_counter()
        publishing = asyncio.ensure_future(
            feed.publish(stack.bootstrap, worker.commands_topic, commands)
        )
        visible_at = await feed.wait_visible(stack.workers, commands, deadline_s(n))
        publish_s = await publishing
        cpu = meter.stop()
    memory = worker.memory_kib()
    seconds = await reading.consume_count(stack.bootstrap, worker.commands_topic, n, 120)
    return IngestRun(
        rate=n / (visible_at - started),
        publish_rate=n / publish_s,
        baseline_rate=n / seconds,
        rss_mib=memory["VmRSS"] / 1024,
        hwm_mib=memory["VmHWM"] / 1024,
        cpu=cpu,
    )


async def _ingest_pair(session: Session, n: int) -> IngestRun:
    """The same ingest into two workers of one group: Kafka splits the partitions."""
    async with session.stack("ingest-pair", workers=2) as stack:
        result = await ingest(session, stack, n)
    log.info("ingest %d, two workers: %s", n, result)
    return result


async def population(session: Session) -> Population:
    """The kept populated stack, or a new one with `sizes.ingest` devices."""
    if session.population is None:
        stack = await session.stack("population").__aenter__()
        try:
            await ingest(session, stack, session.sizes.ingest)
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        await session.keep_population(stack, session.sizes.ingest)
    assert session.population is not None
    return session.population


async def run(session: Session) -> list[Row]:
    n, runs = session.sizes.ingest, session.sizes.runs
    results: list[IngestRun] = []
    for i in range(runs):
        stack = await session.stack("ingest").__aenter__()
        kept = False
        try:
            result = await ingest(session, stack, n)
            log.info("ingest %d: %s", n, result)
            results.append(result)
            kept = i == runs - 1 and await session.keep_population(stack, n)
        finally:
            if not kept:
                await stack.__aexit__(None, None, None)
    pairs = [await _ingest_pair(session, n) for _ in range(runs)]
    size = f"{n:,}"
    publish_rate = Spread.of([r.publish_rate for r in results]).median
    session.note(
        f"ingest {size} with two workers in one group: CPU (cores, last run):"
        f" {describe_cpu(pairs[-1].cpu)}"
    )
    session.note(
        f"ingest {size}: publishing alone ran at {publish_rate:,.0f} commands/s; CPU while"
        f" ingesting (cores, last run): {describe_cpu(results[-1].cpu)}"
    )
    return [
        Row(
            bench="ingest",
            what=f"End-to-end ingest, {size} RegisterDevice via Kafka → visible",
            metric="commands/s",
            devreg=Spread.of([r.rate for r in results]),
            baseline=Spread.of([r.baseline_rate for r in results]),
            baseline_what="raw aiokafka consume",
            target=Target(">=", 10_000),
        ),
        Row(
            bench="ingest",
            what=f"End-to-end ingest, {size} via Kafka → visible, two workers (one per core)",
            metric="commands/s",
            devreg=Spread.of([r.rate for r in pairs]),
            baseline=Spread.of([r.rate for r in results]),
            baseline_what="one worker (the row above)",
        ),
        Row(
            bench="ingest",
            what=f"Worker RSS after ingesting {size} devices (target is at 1M)",
            metric="MiB",
            devreg=Spread.of([r.rss_mib for r in results]),
            target=Target("<=", 300),
        ),
        Row(
            bench="ingest",
            what=f"Worker peak RSS (VmHWM) after ingesting {size} devices",
            metric="MiB",
            devreg=Spread.of([r.hwm_mib for r in results]),
        ),
    ]
