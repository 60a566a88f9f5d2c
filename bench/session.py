"""One `python -m bench` invocation: its options, sizes, scratch directory and shared state."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from bench.stack import Stack

log = logging.getLogger("bench")


class Sizes(msgspec.Struct, frozen=True, kw_only=True):
    runs: int
    http_duration_s: float  # measured seconds per load test
    http_warmup_s: float
    connections: tuple[int, ...]
    ingest: int  # commands per ingest run; also the population of the query benchmarks
    freshness_rates: tuple[float, ...]  # commands/s
    freshness_duration_s: float
    expiry: tuple[int, ...]  # pending expirations per burst
    expiry_watch_s: float  # how long after the expiration a burst is watched at most
    long_run: int  # registrations of the long run (bench/long_run.py)
    capacity_duration_s: float  # seconds per offered rate in the write-capacity search


FULL = Sizes(
    runs=3,
    http_duration_s=10,
    http_warmup_s=1,
    connections=(16, 64),
    ingest=100_000,
    freshness_rates=(1000, 100),
    freshness_duration_s=10,
    expiry=(10_000, 100_000),
    expiry_watch_s=300,
    long_run=1_000_000,
    capacity_duration_s=10,
)
QUICK = Sizes(
    runs=1,
    http_duration_s=2,
    http_warmup_s=0.5,
    connections=(16, 64),
    ingest=10_000,
    freshness_rates=(1000,),
    freshness_duration_s=3,
    expiry=(2_000,),
    expiry_watch_s=60,
    long_run=20_000,
    capacity_duration_s=3,
)


class Population(msgspec.Struct):
    """A running stack whose projection holds `devices` devices (ingested, all visible)."""

    stack: Stack
    devices: int


class Session:
    def __init__(
        self,
        sizes: Sizes,
        root: Path,
        profile_dir: Path | None = None,
        wrk: bool = False,
        trace_dir: Path | None = None,
        worker_env: dict[str, str] | None = None,
    ):
        self.sizes = sizes
        self.root = root
        self.profile_dir = profile_dir
        self.wrk = wrk
        self.trace_dir = trace_dir
        self.worker_env = worker_env or {}
        self.notes: list[str] = []  # go under the results table
        self.population: Population | None = None
        self._ids = itertools.count(1)

    def run_dir(self, label: str) -> Path:
        return self.root / f"{next(self._ids):03d}-{label}"

    def stack(self, label: str, workers: int = 1) -> Stack:
        run_dir = self.run_dir(label)
        if self.trace_dir is None:
            return Stack(run_dir, self.worker_env, workers=workers)
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        trace = self.trace_dir / f"{run_dir.name}.txt"
        command = ("-m", "bench.sqltrace", str(trace), "--", "worker")
        return Stack(run_dir, self.worker_env, command, workers)

    @contextlib.asynccontextmanager
    async def profiled(self, label: str, pid: int) -> AsyncIterator[None]:
        """With --profile: py-spy samples process `pid` while the block runs (raw collapsed
        stacks, summarised by `python -m bench.profile FILE`)."""
        if self.profile_dir is None:
            yield
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        path = self.profile_dir / f"{label}-{next(self._ids):03d}.txt"
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
        process = await asyncio.create_subprocess_exec(
            *argv,
            "--nonblocking",
            "--output",
            str(path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(0.5)  # attached and sampling
        try:
            yield
        finally:
            process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            await process.wait()
            log.info("profile of %s: %s", label, path)

    def note(self, text: str) -> None:
        log.info("note: %s", text)
        self.notes.append(text)

    async def keep_population(self, stack: Stack, devices: int) -> bool:
        """Offer a populated stack to the query benchmarks; False if one is already kept."""
        if self.population is not None:
            return False
        self.population = Population(stack, devices)
        return True

    async def release_population(self) -> None:
        """Stop the kept populated stack (the benchmarks after this one start their own)."""
        await self.close()

    async def close(self) -> None:
        if self.population is not None:
            await self.population.stack.__aexit__(None, None, None)
            self.population = None
