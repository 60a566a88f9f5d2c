"""Freshness: how long until a registration sent over HTTP is visible to GET, at ~1k/s.

Also at 100/s, far from saturation: the pipeline's latency floor.

Open loop: a new device is registered every 1/rate seconds whatever the answers' speed, and
each latency counts from the request's scheduled time (a slow answer cannot delay the next
request and hide itself). devreg's POST answers only once the registration is visible
(read-your-writes), so its latency is the time from "sent" to "visible"; a GET sent right
after it checks that claim, and POST + GET is the time until a client has seen it.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from aiokafka import ConsumerRecord

from bench import load, reading
from bench.register import body
from bench.report import Row, Target
from bench.session import Session, log
from bench.stack import Stack, describe_cpu
from bench.stats import Spread, percentile
from events import DeviceRegistered, decode_command, decode_event

# p50 and p99 targets per rate: 1k commands/s (the freshness issue), and 100/s, "latency when
# quiet" (issue 19)
TARGETS = {1000: (30.0, 100.0), 100: (5.0, 15.0)}


class FreshnessRun(msgspec.Struct, frozen=True):
    post_ms: list[float]
    visible_ms: list[float]
    misses: int  # GET right after a successful POST did not find the device
    errors: int  # POST not answered 200
    rate: float  # registrations answered per second
    stages: dict[str, list[float]]  # where the time went, per registration (see STAGES)


# Wall-clock points of a registration: scheduled, its command's and its event's record
# timestamps (set by devreg's producers when they send), and the POST's answer.
STAGES = {
    "HTTP → command sent": ("scheduled", "command"),
    "command sent → event sent (processor)": ("command", "event"),
    "event sent → POST answered (ack, projector)": ("event", "answered"),
}


async def one_run(session: Session, run: int, rate: float) -> FreshnessRun:
    duration = session.sizes.freshness_duration_s
    post_ms: list[float] = []
    visible_ms: list[float] = []
    failures = {"misses": 0, "errors": 0}
    points: dict[str, dict[str, float]] = {}  # device id -> point name -> wall ms
    wall_offset_ms = time.time() * 1000 - time.perf_counter() * 1000
    async with session.stack("freshness") as stack:
        path = stack.worker.registrations_path
        pool = load.Pool(stack.worker.port)
        tag = f"fresh{rate:.0f}-{run}"

        async def register_then_get(n: int, scheduled: float) -> None:
            try:
                answer = await pool.request(load.post_json(path, body(tag, n)))
            except OSError:
                answer = load.Response(0, b"")
            posted = time.perf_counter()
            if answer.status != 200:
                failures["errors"] += 1
                return
            points[f"{tag}-{n}"] = {
                "scheduled": wall_offset_ms + scheduled * 1000,
                "answered": wall_offset_ms + posted * 1000,
            }
            found = await pool.request(load.get(f"{path}/{tag}-{n}"))
            seen = time.perf_counter()
            post_ms.append((posted - scheduled) * 1000)
            if found.status == 200:
                visible_ms.append((seen - scheduled) * 1000)
            else:
                failures["misses"] += 1

        async with session.profiled("freshness", stack.worker.pid):
            meter = stack.cpu_meter().start()
            started = time.perf_counter()
            await load.open_loop(
                rate, duration, lambda n, t: asyncio.ensure_future(register_then_get(n, t))
            )
            elapsed = time.perf_counter() - started
            cpu = meter.stop()
        pool.close()
        await _stamp(stack, points)
    if run == 0:
        session.note(
            f"freshness at {rate:,.0f}/s: {pool.size} connections were needed; CPU (cores):"
            f" {describe_cpu(cpu)}"
        )
    stages = {
        stage: [p[end] - p[begin] for p in points.values() if begin in p and end in p]
        for stage, (begin, end) in STAGES.items()
    }
    rate_answered = len(post_ms) / elapsed
    return FreshnessRun(
        post_ms, visible_ms, failures["misses"], failures["errors"], rate_answered, stages
    )


async def _stamp(stack: Stack, points: dict[str, dict[str, float]]) -> None:
    """Add the record timestamps of each device's command and DeviceRegistered event."""

    def stamper(name: str) -> reading.OnRecords:
        def on_records(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
            for record in records:
                item = decode_event(record.value or b"") if name == "event" else None
                if name == "command":
                    device = decode_command(record.value or b"").device_id
                elif isinstance(item, DeviceRegistered):
                    device = item.device_id
                else:
                    continue
                if device in points:
                    points[device][name] = record.timestamp
            return all(name in p for p in points.values())

        return on_records

    worker = stack.worker
    await reading.read_topic(stack.bootstrap, worker.commands_topic, stamper("command"), 60)
    await reading.read_topic(stack.bootstrap, worker.events_topic, stamper("event"), 60)


async def run(session: Session) -> list[Row]:
    rows: list[Row] = []
    for rate in session.sizes.freshness_rates:
        runs = []
        for i in range(session.sizes.runs):
            result = await one_run(session, i, rate)
            log.info(
                "freshness at %.0f/s: answered %.0f/s, p50 %.1f ms, p99 %.1f ms, misses %d,"
                " errors %d",
                rate,
                result.rate,
                percentile(result.post_ms, 50),
                percentile(result.post_ms, 99),
                result.misses,
                result.errors,
            )
            runs.append(result)
        rows += _rows(session, rate, runs)
    return rows


def _rows(session: Session, rate: float, runs: list[FreshnessRun]) -> list[Row]:
    duration = session.sizes.freshness_duration_s
    misses, errors = sum(r.misses for r in runs), sum(r.errors for r in runs)
    session.note(
        f"freshness at {rate:,.0f}/s: {misses} GETs right after a 200 POST missed the device;"
        f" {errors} POSTs were not answered 200; answered"
        f" {Spread.of([r.rate for r in runs]).median:,.0f}/s"
    )
    breakdown = "; ".join(
        f"{stage} {Spread.of([percentile(r.stages[stage], 50) for r in runs]).median:,.1f}"
        f"/{Spread.of([percentile(r.stages[stage], 99) for r in runs]).median:,.1f}"
        for stage in STAGES
    )
    session.note(f"freshness at {rate:,.0f}/s, where the time goes (p50/p99 ms): {breakdown}")
    what = f"Freshness at {rate:,.0f}/s for {duration:.0f} s"
    targets = TARGETS.get(round(rate))
    rows = []
    for n, q in enumerate((50, 99)):
        rows.append(
            Row(
                bench="freshness",
                what=f"{what}: POST sent → answered (= visible)",
                metric=f"p{q} ms",
                devreg=Spread.of([percentile(r.post_ms, q) for r in runs]),
                target=Target("<=", targets[n]) if targets else None,
            )
        )
    for q in (50, 99):
        rows.append(
            Row(
                bench="freshness",
                what=f"{what}: POST sent → GET after it answered 200",
                metric=f"p{q} ms",
                devreg=Spread.of([percentile(r.visible_ms, q) for r in runs]),
            )
        )
    return rows
