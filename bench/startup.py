"""Start-up of a large registry on `devreg run`: how long until it serves again.

N new devices are published to the commands topic of one `python -m services run` (the
embedded broker, its kept log), and applied. Then `devreg run` is stopped, cleanly (SIGTERM)
and by SIGKILL of its process group, and started again: the time from the start to
`/readyz` answering 200, and what start-up says it recovered.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

import aiohttp

from bench import feed
from bench.report import Row, Target
from bench.session import Session, log
from bench.stack import ADMIN_KEY, API_KEY, APP_ID
from bench.stats import Spread
from services.log.broker import free_port

PARTITIONS = 6  # devreg run's default


class Run:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> float:
        env = {
            **os.environ,
            "DEVREG_DATA_DIR": str(self.data_dir),
            "DEVREG_HTTP_PORT": str(self.port),
            "DEVREG_APPS": f"{APP_ID}:{API_KEY}:{ADMIN_KEY}",
        }
        env.pop("KAFKA_BOOTSTRAP", None)
        started = time.perf_counter()
        with open(self.data_dir / "run.log", "ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services",
                "run",
                env=env,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.process.returncode is None, "devreg run exited"
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/readyz") as answer:
                        if answer.status == 200:
                            return time.perf_counter() - started
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)

    async def visible(self, device: str, deadline_s: float) -> None:
        url = f"http://127.0.0.1:{self.port}/{APP_ID}/{API_KEY}/messaging/registrations/{device}"
        end = time.monotonic() + deadline_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < end:
                async with session.get(url) as answer:
                    if answer.status == 200:
                        return
                await asyncio.sleep(0.5)
        raise RuntimeError(f"{device} not visible within {deadline_s}s")

    async def stop(self, kill: bool) -> None:
        assert self.process is not None
        if kill:
            os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.terminate()
        await self.process.wait()

    def recovered(self) -> str:
        lines = re.findall(
            r"devreg: recovered the log: (.*)", (self.data_dir / "run.log").read_text()
        )
        return lines[-1] if lines else "?"


async def run(session: Session) -> list[Row]:
    n = session.sizes.long_run
    data_dir = session.run_dir("startup")
    await asyncio.to_thread(data_dir.mkdir, parents=True)
    devreg = Run(data_dir)
    await devreg.start()
    commands = feed.prepare(n, PARTITIONS, feed.registration())
    bootstrap = (data_dir / "embedded-broker.address").read_text().strip()
    began = time.perf_counter()
    await feed.publish(bootstrap, "devreg.commands", commands)
    for device in commands.last_device.values():
        await devreg.visible(device, 120 + n / 200)
    # The backlog's whole way: published in bulk, sealed into copies, decided, visible (each
    # partition's last device polled every 0.5 s: a lower bound, close at this size).
    ingested = n / (time.perf_counter() - began)
    rows = [
        Row(
            bench="startup",
            what=f"`devreg run` ingest of {n:,} raw Kafka commands published in bulk → visible",
            metric="commands/s",
            devreg=Spread.of([ingested]),
        )
    ]
    for how in ("SIGTERM", "SIGKILL"):
        await devreg.stop(kill=how == "SIGKILL")
        seconds = await devreg.start()
        for device in commands.last_device.values():
            await devreg.visible(device, 30)
        log.info("start-up after %s: %.2fs; %s", how, seconds, devreg.recovered())
        session.note(f"start-up after {how} with {n:,} registrations: {devreg.recovered()}")
        rows.append(
            Row(
                bench="startup",
                what=f"`devreg run` start-up to ready, {n:,} registrations, after {how}",
                metric="s",
                devreg=Spread.of([seconds]),
                target=Target("<=", 30),
            )
        )
    await devreg.stop(kill=False)
    return rows
