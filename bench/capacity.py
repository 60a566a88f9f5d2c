"""Write capacity: the highest open-loop rate of registrations that one worker answers with
read-your-writes (each POST answers once the registration is visible) at p99 ≤ 100 ms.

Each offered rate is tried on a fresh stack (a fresh embedded broker: its fetches slow down
as its history grows, docs/design.md §10) for `capacity_duration_s`, latency counted from
each request's scheduled time (no coordinated omission). A rate passes when every POST was
answered 200 within the run, at p99 ≤ the bound. The search grows the rate by half until a
rate fails (halves it while rates fail), then halves the interval between the highest pass
and the lowest failure three times.
"""

from __future__ import annotations

import asyncio
import math
import time

import msgspec

from bench import load
from bench.register import body
from bench.report import Row, Target
from bench.session import Session, log
from bench.stack import cpu_seconds, describe_cpu
from bench.stats import Spread, percentile

P99_BOUND_MS = 100.0
TARGET_RATE = 6000  # issue 19
START_RATE = 1000.0
GROWTH = 1.5
BISECTIONS = 3
MAX_RATE = 20_000.0
MIN_RATE = 50.0


class Probe(msgspec.Struct, frozen=True):
    rate: float  # offered per second
    answered: float  # answered 200 per second
    p50_ms: float
    p99_ms: float
    errors: int  # not answered 200 (503 included)
    worker_us: float  # worker CPU per POST answered, µs
    cores: dict[str, float]

    @property
    def passed(self) -> bool:
        return self.errors == 0 and self.p99_ms <= P99_BOUND_MS


async def probe(session: Session, rate: float, label: str) -> Probe:
    duration = session.sizes.capacity_duration_s
    latencies: list[float] = []
    errors = 0
    async with session.stack("capacity") as stack:
        path = stack.worker.registrations_path
        pool = load.Pool(stack.worker.port, limit=4096)

        async def one(n: int, scheduled: float) -> None:
            nonlocal errors
            try:
                answer = await pool.request(load.post_json(path, body(label, n)))
            except OSError:
                answer = load.Response(0, b"")
            if answer.status == 200:
                latencies.append((time.perf_counter() - scheduled) * 1000)
            else:
                errors += 1

        async with session.profiled(f"capacity-{rate:.0f}", stack.worker.pid):
            meter = stack.cpu_meter().start()
            worker_cpu = cpu_seconds(stack.worker.pid)
            started = time.perf_counter()
            await load.open_loop(rate, duration, lambda n, t: asyncio.ensure_future(one(n, t)))
            elapsed = time.perf_counter() - started
            worker_cpu = cpu_seconds(stack.worker.pid) - worker_cpu
            cores = meter.stop()
        pool.close()
    answered = len(latencies)
    result = Probe(
        rate=rate,
        answered=answered / elapsed,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        errors=errors,
        worker_us=worker_cpu / answered * 1e6 if answered else math.nan,
        cores=cores,
    )
    log.info(
        "capacity: offered %.0f/s → answered %.0f/s, p50 %.1f ms, p99 %.1f ms, %d not 200,"
        " worker %.0f µs/POST: %s",
        rate,
        result.answered,
        result.p50_ms,
        result.p99_ms,
        errors,
        result.worker_us,
        "pass" if result.passed else "fail",
    )
    return result


async def search(session: Session, run: int) -> tuple[Probe | None, list[Probe]]:
    """The highest passing rate found, and every probe made: up by half from START_RATE
    while rates pass (down by half while they fail), then BISECTIONS between the highest
    pass and the lowest failure."""
    probes: list[Probe] = []
    best: Probe | None = None
    failed_at: float | None = None
    rate = START_RATE
    while MIN_RATE <= rate <= MAX_RATE:
        result = await probe(session, rate, f"cap{run}-{rate:.0f}")
        probes.append(result)
        if result.passed:
            best = result
            if failed_at is not None:
                break
            rate = round(rate * GROWTH, -1)
        else:
            failed_at = rate
            if best is not None:
                break
            rate = round(rate / 2, -1)
    for _ in range(BISECTIONS if best is not None and failed_at is not None else 0):
        assert best is not None
        assert failed_at is not None
        rate = round((best.rate + failed_at) / 2, -1)
        if rate in (best.rate, failed_at):
            break
        result = await probe(session, rate, f"cap{run}-{rate:.0f}")
        probes.append(result)
        if result.passed:
            best = result
        else:
            failed_at = rate
    return best, probes


async def run(session: Session) -> list[Row]:
    bests: list[Probe | None] = []
    for i in range(session.sizes.runs):
        best, probes = await search(session, i)
        bests.append(best)
        tried = ", ".join(
            f"{p.rate:,.0f} ({p.p99_ms:,.0f} ms{'' if p.errors == 0 else f', {p.errors} not 200'})"
            for p in probes
        )
        session.note(f"write capacity, run {i + 1}: offered/s (p99) tried: {tried}")
        if best is not None:
            session.note(
                f"write capacity, run {i + 1}: at {best.rate:,.0f}/s CPU (cores):"
                f" {describe_cpu(best.cores)}"
            )
    found = [b for b in bests if b is not None]
    what = (
        f"Write capacity: open loop, read-your-writes, one worker, fresh broker, "
        f"{session.sizes.capacity_duration_s:.0f} s per rate"
    )
    return [
        Row(
            bench="capacity",
            what=f"{what}: highest rate with p99 ≤ {P99_BOUND_MS:.0f} ms, all answered 200",
            metric="req/s",
            devreg=Spread.of([b.rate if b is not None else 0.0 for b in bests]),
            target=Target(">=", TARGET_RATE),
        ),
        Row(
            bench="capacity",
            what=f"{what}: p99 at that rate",
            metric="p99 ms",
            devreg=Spread.of([b.p99_ms for b in found]),
            target=Target("<=", P99_BOUND_MS),
        ),
        Row(
            bench="capacity",
            what=f"{what}: worker CPU per POST at that rate",
            metric="µs",
            devreg=Spread.of([b.worker_us for b in found]),
        ),
    ]
