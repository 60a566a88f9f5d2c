"""What a benchmark run stands on: an embedded Tansu broker and devreg worker processes.

Every run gets a fresh broker (Tansu keeps its log in memory: a fresh one keeps runs from
slowing each other down) and a worker with its own data directory and topic prefix. The
worker is `python -m services worker`, exactly what `devreg worker` runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import aiohttp

from bench.memory import memory_kib
from services.log.broker import EmbeddedBroker, free_port

APP_ID, API_KEY = "bench-app", "bench-key"
ADMIN_KEY = "bench-admin-key-0123456789"  # the channel page is an admin route
PARTITIONS = 6  # devreg's default (DEVREG_PARTITIONS)


class WorkerError(RuntimeError):
    """The devreg worker exited or did not become ready."""


class Worker:
    """One `python -m services worker` process on its own data directory and topics."""

    def __init__(
        self,
        root: Path,
        bootstrap: str,
        env: dict[str, str] | None = None,
        command: tuple[str, ...] = ("-m", "services", "worker"),
        prefix: str | None = None,
    ):
        """`prefix`: the topics and consumer group of another worker, to join it."""
        self.command = command
        self.prefix = prefix or f"b{uuid.uuid4().hex[:10]}"
        self.data_dir = root / f"{self.prefix}-{uuid.uuid4().hex[:4]}"
        self.bootstrap = bootstrap
        self.port = free_port()
        self.extra_env = env or {}
        self.log_path = self.data_dir / "worker.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def registrations_path(self) -> str:
        return f"/{APP_ID}/{API_KEY}/messaging/registrations"

    @property
    def commands_topic(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def events_topic(self) -> str:
        return f"{self.prefix}.events"

    @property
    def projection_path(self) -> Path:
        return self.data_dir / "projection.sqlite"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEVREG_")}
        env.update(
            KAFKA_BOOTSTRAP=self.bootstrap,
            DEVREG_DATA_DIR=str(self.data_dir),
            DEVREG_HTTP_PORT=str(self.port),
            DEVREG_TOPIC_PREFIX=self.prefix,
            DEVREG_GROUP_ID=f"{self.prefix}-group",
            DEVREG_APPS=f"{APP_ID}:{API_KEY}:{ADMIN_KEY}",
            DEVREG_PARTITIONS=str(PARTITIONS),
            # Tansu holds a group join for half the session timeout (docs/design.md §10).
            DEVREG_SESSION_TIMEOUT_MS="2000",
            DEVREG_LOG_LEVEL="info",
            DEVREG_ADVERTISED_URL=self.base_url,
        )
        env.update(self.extra_env)
        return env

    async def start(self, deadline_s: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, *self.command]
        with open(self.log_path, "ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                env=self.environment(),
                stdout=log,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
            )
        end = time.monotonic() + deadline_s
        async with aiohttp.ClientSession() as session:
            while not await self._ready(session):
                if time.monotonic() > end:
                    raise WorkerError(f"worker not ready after {deadline_s}s:\n{self.log()}")
                await asyncio.sleep(0.05)

    async def _ready(self, session: aiohttp.ClientSession) -> bool:
        assert self.process is not None
        if self.process.returncode is not None:
            raise WorkerError(f"worker exited with {self.process.returncode}:\n{self.log()}")
        try:
            async with session.get(f"{self.base_url}/readyz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def check(self) -> None:
        """Raise WorkerError (with the end of its log) if the worker has exited."""
        if self.process is not None and self.process.returncode is not None:
            raise WorkerError(f"worker exited with {self.process.returncode}:\n{self.log()}")

    def memory_kib(self) -> dict[str, int]:
        return memory_kib(self.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    async def stop(self, deadline_s: float = 30.0) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), deadline_s)
        except TimeoutError:
            process.kill()
            await process.wait()


class Stack:
    """A fresh broker plus devreg workers in one group (one by default);
    `async with Stack(...) as stack:`."""

    def __init__(
        self,
        root: Path,
        env: dict[str, str] | None = None,
        command: tuple[str, ...] = ("-m", "services", "worker"),
        workers: int = 1,
    ):
        self.root = root
        self.env = env
        self.command = command
        self.size = workers
        self.broker = EmbeddedBroker(log_path=root / "tansu.log")
        self.worker: Worker  # the first one
        self.workers: list[Worker] = []

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def cpu_meter(self) -> CpuMeter:
        """CPU of the worker, its event loop alone (its main thread: the core a worker's
        requests and batches wait for), the broker and this process (the load generator)."""
        process = self.broker._process
        assert process is not None
        names = ["worker"] if self.size == 1 else [f"worker{i + 1}" for i in range(self.size)]
        pids: dict[str, int | tuple[int, int]] = {}
        for name, worker in zip(names, self.workers, strict=True):
            pids[name] = worker.pid
            pids[f"{name} loop"] = (worker.pid, worker.pid)
        return CpuMeter({**pids, "broker": process.pid, "bench": os.getpid()})

    async def __aenter__(self) -> Stack:
        self.root.mkdir(parents=True, exist_ok=True)
        await self.broker.start()
        try:
            self.worker = Worker(self.root, self.broker.bootstrap, self.env, self.command)
            self.workers = [self.worker]
            for _ in range(self.size - 1):
                prefix = self.worker.prefix
                self.workers.append(
                    Worker(self.root, self.broker.bootstrap, self.env, self.command, prefix)
                )
            # Each is ready once it owns partitions and has caught up: start them together.
            await asyncio.gather(*(w.start() for w in self.workers))
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await asyncio.gather(*(w.stop() for w in self.workers))
        finally:
            await self.broker.stop()


class Server:
    """`python -m bench.servers <mode>`: a stand-in HTTP server in a process of its own."""

    def __init__(self, mode: str, *args: str):
        self.port = free_port()
        self.argv = [sys.executable, "-m", "bench.servers", mode, "--port", str(self.port)]
        self.argv += args
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Server:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL
        )
        end = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process.returncode is not None or time.monotonic() > end:
                    raise WorkerError(f"{' '.join(self.argv)} did not start")
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/readyz") as response:
                        if response.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time of a process so far (fields 14 and 15 of /proc/<pid>/stat), or
    of one of its threads (/proc/<pid>/task/<thread>/stat; a main thread's id is the pid)."""
    stat = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by each named process between start() and stop(), in cores (1.0 = one core
    busy for the whole interval): says which process the wall-clock time went to."""

    def __init__(self, pids: dict[str, int | tuple[int, int]]):
        """`pids`: a process id, or (process id, thread id) for one thread of it."""
        self._pids = pids
        self._start: dict[str, float] = {}
        self._started = 0.0

    @staticmethod
    def _used(spec: int | tuple[int, int]) -> float:
        return cpu_seconds(*spec) if isinstance(spec, tuple) else cpu_seconds(spec)

    def start(self) -> CpuMeter:
        self._start = {name: self._used(spec) for name, spec in self._pids.items()}
        self._started = time.perf_counter()
        return self

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._started
        return {
            name: (self._used(spec) - self._start[name]) / wall for name, spec in self._pids.items()
        }


def describe_cpu(cores: dict[str, float]) -> str:
    return ", ".join(f"{name} {used:.2f}" for name, used in cores.items())
