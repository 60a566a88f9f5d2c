"""Expiry lag: N registrations that all expire at the same millisecond.

N new devices are registered through Kafka with one expiration far enough ahead for all of
them to be in the projection before it passes (the run is discarded and retried otherwise).
Then, from this process:
- the projection (read-only) is polled every 20 ms for the number of subscriptions still
  holding an expiration: the time at which q % of them are gone, minus the expiration, is the
  q-th percentile of "gone from the projection" lag;
- the events topic is read from the start with a plain consumer until all N
  RegistrationExpired events are seen, for two lags per device: occurred_at - expiration
  (the time the scheduler asked; a repeated expiry command keeps the first one's time, so
  this cannot show a slow pipeline) and the record's timestamp - expiration (when the event
  was appended to the log: "expiry lands in the log within a second", docs/design.md §7);
- the worker's CPU from the expiration until the projection holds none of them, per device.
Queries hide a passed expiration even before its event lands, so neither lag is visible to
clients; they measure how long the log and the projection take to say so.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from aiokafka import ConsumerRecord

from bench import feed, reading
from bench.report import Row, Target
from bench.session import Session, log
from bench.stack import PARTITIONS, Stack, WorkerError, cpu_seconds
from bench.stats import Spread, percentile
from events import ExpireRegistration, RegistrationExpired, decode_command, decode_event

POLL_S = 0.02


class ExpiryRun(msgspec.Struct, frozen=True):
    event_lag_ms: list[float]  # occurred_at - expiration; the budget for events never seen
    logged_lag_ms: list[float]  # the event record's timestamp - expiration; same padding
    gone_lag_ms: dict[str, float]  # "p50", "p99", "max"
    ingest_rate: float
    pending: int  # still in the projection when the watch budget ran out (0: complete)
    expiry_commands: int  # expiry commands the scheduler sent (either kind)
    expiry_devices: int  # the device expiries they carried, repeats included
    worker_us_per_device: float  # the worker's CPU from the expiration to the end of the watch
    # ... and from all being visible to the expiration: the expiries decided ahead (0 when
    # nothing is: an idle worker's few µs)
    lead_us_per_device: float = 0.0


class TooSlow(Exception):
    """The registrations were not all visible before their expiration."""

    def __init__(self, rate: float):
        super().__init__(f"ingest at {rate:.0f}/s was too slow for the margin")
        self.rate = rate


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def watch_projection(
    stack: Stack, n: int, expiration: int, budget_s: float
) -> tuple[dict[str, float], int]:
    """Poll until no expiration is pending or `budget_s` after the expiration; return the
    gone-lag percentiles (the budget for those not reached) and how many are still pending."""
    db = feed.read_only(stack.worker.projection_path)
    samples: list[tuple[int, int]] = []  # (wall ms, subscriptions still pending)
    budget_ms = budget_s * 1000
    try:
        while True:
            row = db.execute("SELECT COUNT(*) FROM subscriptions WHERE expiration IS NOT NULL")
            remaining, at = int(row.fetchone()[0]), wall_ms()
            samples.append((at, remaining))
            if remaining == 0 or at - expiration > budget_ms:
                break
            stack.worker.check()
            await asyncio.sleep(POLL_S)
    finally:
        db.close()

    def gone(q: float) -> float:
        reached = (t for t, left in samples if left <= n * (1 - q / 100))
        return float(next(reached, expiration + budget_ms) - expiration)

    return {"p50": gone(50), "p99": gone(99), "max": gone(100)}, samples[-1][1]


async def expired_lags(stack: Stack, n: int, expiration: int) -> tuple[list[float], list[float]]:
    """For up to n RegistrationExpired events on the log: occurred_at - expiration (when the
    scheduler asked: a repeated command keeps the first one's time) and the record's
    timestamp - expiration (when the event was appended to the log)."""
    occurred: list[float] = []
    logged: list[float] = []

    def on_records(records: list[ConsumerRecord[bytes, bytes]]) -> bool | None:
        for record in records:
            event = decode_event(record.value or b"")
            if isinstance(event, RegistrationExpired):
                occurred.append(float(event.occurred_at - expiration))
                logged.append(float(record.timestamp - expiration))
        return len(occurred) >= n

    await reading.read_topic(stack.bootstrap, stack.worker.events_topic, on_records, 120)
    return occurred, logged


async def count_expiry_commands(stack: Stack) -> tuple[int, int]:
    """Expiry commands on the commands topic (the scheduler's sends, repeats included) and
    the device expiries they carry, read until the topic has nothing more to give."""
    commands = devices = 0

    def on_records(records: list[ConsumerRecord[bytes, bytes]]) -> bool | None:
        nonlocal commands, devices
        for r in records:
            if b'"type":"expire-registration' not in (r.value or b""):
                continue  # a registration: not decoded
            command = decode_command(r.value or b"")
            # Either kind (a tree before `expire-registrations/1` runs this too: no import)
            many = getattr(command, "devices", None)
            if many is not None or isinstance(command, ExpireRegistration):
                commands, devices = commands + 1, devices + (1 if many is None else len(many))
        return None  # read to the end

    await reading.read_topic(stack.bootstrap, stack.worker.commands_topic, on_records, 300)
    return commands, devices


async def one_run(session: Session, n: int, rate_estimate: float) -> ExpiryRun:
    margin_s = 10 + 1.5 * n / rate_estimate
    budget_s = session.sizes.expiry_watch_s
    expiration = wall_ms() + round(margin_s * 1000)
    commands = feed.prepare(n, PARTITIONS, feed.registration(expiration=expiration))
    async with session.stack(f"expiry-{n}") as stack:
        started = time.perf_counter()
        publishing = asyncio.ensure_future(
            feed.publish(stack.bootstrap, stack.worker.commands_topic, commands)
        )
        deadline = margin_s + 60
        visible_at = await feed.wait_visible(stack.worker, commands, deadline)
        await publishing
        rate = n / (visible_at - started)
        if wall_ms() > expiration - 500:
            raise TooSlow(rate)
        # Until the expiration the worker decides what it can ahead (DEVREG_EXPIRY_LEAD_MS);
        # its CPU is counted apart from what it spends from the expiration on.
        cpu_visible = cpu_seconds(stack.worker.pid)
        await asyncio.sleep(max(expiration - wall_ms() - 20, 0) / 1000)
        cpu_before = cpu_seconds(stack.worker.pid)
        async with session.profiled(f"expiry-{n}", stack.worker.pid):
            gone, pending = await watch_projection(stack, n, expiration, budget_s)
        cpu_us = (cpu_seconds(stack.worker.pid) - cpu_before) * 1e6 / n
        occurred, logged = await expired_lags(stack, n - pending, expiration)
        missing = [budget_s * 1000] * (n - len(occurred))
        sent, devices = await count_expiry_commands(stack)
    lead_us = (cpu_before - cpu_visible) * 1e6 / n
    return ExpiryRun(
        occurred + missing, logged + missing, gone, rate, pending, sent, devices, cpu_us, lead_us
    )


async def run(session: Session) -> list[Row]:
    await session.release_population()  # an idle worker must not share the CPU with these
    rows: list[Row] = []
    rate_estimate = 2000.0  # commands/s; ingest slows down as the tables grow
    for n in session.sizes.expiry:
        rate_estimate /= 2  # a bigger burst than the last: leave room
        runs: list[ExpiryRun] = []
        failures: list[str] = []
        while len(runs) < session.sizes.runs and len(failures) < 2:
            try:
                result = await one_run(session, n, rate_estimate)
            except TooSlow as slow:
                log.warning("expiry %d: %s; retrying with a longer margin", n, slow)
                rate_estimate = slow.rate / 2
                continue
            except (WorkerError, TimeoutError) as exc:
                log.exception("expiry %d: run failed", n)
                failures.append(repr(exc)[:300])
                continue
            log.info(
                "expiry %d: occurred p99 %.0f ms, logged p99 %.0f ms, gone %s, pending %d,"
                " %d expiry commands sent for %d device expiries, worker %.1f µs per device"
                " (%.1f before the expiration)",
                n,
                percentile(result.event_lag_ms, 99),
                percentile(result.logged_lag_ms, 99),
                result.gone_lag_ms,
                result.pending,
                result.expiry_commands,
                result.expiry_devices,
                result.worker_us_per_device,
                result.lead_us_per_device,
            )
            runs.append(result)
            rate_estimate = result.ingest_rate
            if result.pending:
                break  # another run would hit the same wall: one is evidence enough
        _notes(session, n, runs, failures)
        rows += _rows(n, runs)
    return rows


def _notes(session: Session, n: int, runs: list[ExpiryRun], failures: list[str]) -> None:
    for failure in failures:
        session.note(f"expiry {n:,}: a run failed and was left out: {failure}")
    budget = session.sizes.expiry_watch_s
    for result in runs:
        if result.pending:
            session.note(
                f"expiry {n:,}: **incomplete**: {result.pending:,} of {n:,} expirations were"
                f" still in the projection {budget:.0f} s after they fell due; figures that"
                f" reached {budget * 1000:,.0f} ms are lower bounds (a single run was made)"
            )
    sent = [r.expiry_commands for r in runs]
    devices = [r.expiry_devices for r in runs]
    if sent:
        session.note(
            f"expiry {n:,}: the scheduler sent {min(sent):,}-{max(sent):,} expiry commands"
            f" carrying {min(devices):,}-{max(devices):,} device expiries for {n:,}"
            " expirations (repeats included)"
        )


def _rows(n: int, runs: list[ExpiryRun]) -> list[Row]:
    lists = {
        "RegistrationExpired.occurred_at - expiration": [r.event_lag_ms for r in runs],
        "event appended to the log (record time) - expiration": [r.logged_lag_ms for r in runs],
    }
    rows = []
    for what, lags in lists.items():
        for q, metric in ((50, "p50 ms"), (99, "p99 ms"), (100, "max ms")):
            rows.append(
                Row(
                    bench="expiry",
                    what=f"Expiry lag, {n:,} pending: {what}",
                    metric=metric,
                    devreg=Spread.of([percentile(lag, q) for lag in lags]),
                    target=Target("<=", 1000) if q == 99 else None,
                )
            )
    rows.append(
        Row(
            bench="expiry",
            what=f"Expiry lag, {n:,} pending: worker CPU from the expiration until all are gone",
            metric="µs per device",
            devreg=Spread.of([r.worker_us_per_device for r in runs]),
        )
    )
    rows.append(
        Row(
            bench="expiry",
            what=f"Expiry lag, {n:,} pending: worker CPU before the expiration (decided ahead)",
            metric="µs per device",
            devreg=Spread.of([r.lead_us_per_device for r in runs]),
        )
    )
    for key, metric in (("p50", "p50 ms"), ("p99", "p99 ms"), ("max", "max ms")):
        rows.append(
            Row(
                bench="expiry",
                what=f"Expiry lag, {n:,} pending: gone from the projection - expiration",
                metric=metric,
                devreg=Spread.of([r.gone_lag_ms[key] for r in runs]),
            )
        )
    return rows
