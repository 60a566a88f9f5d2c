"""The long run: registrations through HTTP on one embedded `devreg run`, for a long time.

What `make run` users meet (issue 18): every request registers a new device, read-your-writes
on, 64 connections, closed loop, on `python -m services run` (the embedded broker with its
kept log, renewed as it grows). The run is cut in tenths by request count; per tenth: req/s,
p99, the CPU the broker and the devreg process spent per request, and devreg's RSS. The
claim is flatness: the last tenth within 20% of the first. The baseline of each tenth is the
first tenth.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

import aiohttp
import msgspec

from bench import load
from bench.memory import memory_kib
from bench.register import body
from bench.report import Row, Target
from bench.session import Session, log
from bench.stack import CpuMeter
from bench.stats import Spread, percentile
from services.log.broker import free_port

CONNECTIONS = 64
PATH = "/demo-app/demo-rest-key/messaging/registrations"


class Tenth(msgspec.Struct, frozen=True):
    rate: float
    p99_ms: float
    errors: int
    broker_ms_per_request: float
    devreg_ms_per_request: float
    devreg_rss_mib: float  # at the tenth's end
    # devreg's event loop alone (its main thread): the core every request waits for. The
    # rest of devreg_ms_per_request runs on threads (SQLite checkpoints, faust's consumer).
    loop_ms_per_request: float = 0.0
    # This process's CPU: the load generator shares the machine's two cores with devreg.
    load_ms_per_request: float = 0.0
    # The CPU time a fixed piece of pure Python takes here during the tenth (median): the
    # machine's own speed at that moment, shared with other tenants. Where it rises as much
    # as devreg's CPU per request does, the machine slowed, not devreg.
    probe_ms: float = 0.0


PROBE_EVERY_S = 3.0


def _probe() -> float:
    """CPU ms of a fixed pure-Python workload (dict updates and small strings, like a
    request's), on this thread: it blocks the load generator for ~10 ms."""
    began = time.thread_time()
    counts: dict[int, int] = {}
    for i in range(60_000):
        counts[i % 977] = counts.get(i % 977, 0) + i
        str(i)
    return (time.thread_time() - began) * 1000


async def _probing(found: list[float]) -> None:
    while True:
        await asyncio.sleep(PROBE_EVERY_S)
        found.append(_probe())


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(c) for c in children]
    return found


async def _ready(port: int, deadline_s: float = 120) -> None:
    end = time.monotonic() + deadline_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < end:
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("devreg run did not become ready")


async def _tenth(port: int, first: int, count: int, pids: dict[str, int]) -> Tenth:
    conns = [await load.connect("127.0.0.1", port) for _ in range(CONNECTIONS)]
    numbers = iter(range(first, first + count))
    latencies: list[float] = []
    errors = 0
    devreg = pids["devreg"]
    # devreg's main thread is its event loop; this process is the load generator.
    meter = CpuMeter({**pids, "loop": (devreg, devreg), "load": os.getpid()}).start()
    began = time.perf_counter()

    async def client(conn: load._Connection) -> None:
        nonlocal errors
        for n in numbers:
            sent = time.perf_counter()
            response = await conn.request(load.post_json(PATH, body("long", n)))
            latencies.append((time.perf_counter() - sent) * 1000)
            errors += response.status != 200

    probes: list[float] = [_probe()]
    probing = asyncio.ensure_future(_probing(probes))
    try:
        await asyncio.gather(*(client(c) for c in conns))
    finally:
        probing.cancel()
        for conn in conns:
            conn.close()
    cores = meter.stop()
    wall = time.perf_counter() - began
    ms = {name: used * wall * 1000 / count for name, used in cores.items()}  # CPU per request
    return Tenth(
        count / wall,
        percentile(latencies, 99),
        errors,
        ms["broker"],
        ms["devreg"],
        memory_kib(devreg)["VmRSS"] / 1024,
        ms["loop"],
        ms["load"] - sum(probes) / count,  # less the probes' own
        percentile(probes, 50),
    )


PROFILED = (1, 5, 10)  # with --profile: the tenths py-spy samples, to compare start and end


async def measure(total: int, data_dir: Path, session: Session | None = None) -> list[Tenth]:
    port = free_port()
    env = {**os.environ, "DEVREG_DATA_DIR": str(data_dir), "DEVREG_HTTP_PORT": str(port)}
    env.pop("KAFKA_BOOTSTRAP", None)
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    with open(data_dir / "run.log", "ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services", "run", env=env, stdout=out, stderr=out
        )
    try:
        await _ready(port)
        pids = {"devreg": process.pid, "broker": _children(process.pid)[0]}
        tenths = []
        for k in range(10):
            sampled: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
            if session is not None and k + 1 in PROFILED:
                sampled = session.profiled(f"long-tenth{k + 1}", process.pid)
            async with sampled:
                tenth = await _tenth(port, k * (total // 10), total // 10, pids)
            log.info("long run, tenth %d: %s", k + 1, tenth)
            tenths.append(tenth)
        return tenths
    finally:
        process.terminate()
        await process.wait()


async def run(session: Session) -> list[Row]:
    total = session.sizes.long_run
    tenths = await measure(total, session.run_dir("long-run"), session)
    what = f"Long run, {total:,} HTTP registrations on one `devreg run`, 64 conn (read-your-writes)"
    first = tenths[0]
    rows = []
    for k, t in enumerate(tenths, start=1):
        for metric, value, base, target in (
            ("req/s", t.rate, first.rate, Target(">=", 0.8 * first.rate) if k == 10 else None),
            ("p99 ms", t.p99_ms, first.p99_ms, None),
            ("broker CPU ms/req", t.broker_ms_per_request, first.broker_ms_per_request, None),
            ("devreg CPU ms/req", t.devreg_ms_per_request, first.devreg_ms_per_request, None),
            ("devreg loop CPU ms/req", t.loop_ms_per_request, first.loop_ms_per_request, None),
            ("load generator CPU ms/req", t.load_ms_per_request, first.load_ms_per_request, None),
            ("reference probe CPU ms", t.probe_ms, first.probe_ms, None),
            ("devreg RSS MiB", t.devreg_rss_mib, first.devreg_rss_mib, None),
        ):
            rows.append(
                Row(
                    bench="long",
                    what=f"{what}, tenth {k}",
                    metric=metric,
                    devreg=Spread.of([value]),
                    baseline=Spread.of([base]),
                    baseline_what="first tenth",
                    target=target,
                )
            )
    overall = total / sum((total // 10) / t.rate for t in tenths)
    rows.append(
        Row(
            bench="long",
            what=f"{what}, whole run",
            metric="req/s",
            devreg=Spread.of([overall]),
            target=Target(">=", 1600),
            note=f"{sum(t.errors for t in tenths)} non-200 answers",
        )
    )
    return rows
