"""Test helpers: devreg worker processes, HTTP calls, metrics and waiting on conditions with
deadlines (tests/topics.py publishes commands and reads topics)."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from services.log.broker import free_port

T = TypeVar("T")
APPS = {"app-a": "key-a", "app-b": "key-b"}  # app id -> REST key
ADMIN_KEYS = {"app-a": "admin-key-a-0123456789", "app-b": "admin-key-b-0123456789"}
ADMIN_HEADER = "X-Devreg-Admin-Key"
# One fingerprint key for every test worker, as a group of workers must share one.
TOKEN_KEYS = "t1:" + "dGVzdC1maW5nZXJwcmludC1rZXktb2YtMzItYnl0ZXMhIQ=="
# Every test worker and CLI run shares one key-encryption key, as a deployment's workers must.
TEST_KEK = "dGVzdC1vbmx5LWtleS1lbmNyeXB0aW9uLWtleS0zMmI="
PARTITIONS = 3  # of the test workers' commands and events topics
# `make soak` sets DEVREG_SOAK=1: the crash tests then run at their soak sizes.
SOAK = os.environ.get("DEVREG_SOAK") == "1"


def sized(test: int, soak: int) -> int:
    """A test's size (or deadline): `test` in `make test`, `soak` under `make soak`."""
    return soak if SOAK else test


def now_ms() -> int:
    """Wall-clock ms since the epoch, the clock devreg stamps commands with."""
    return time.time_ns() // 1_000_000


async def equals(answer: Awaitable[object], expected: object) -> bool:
    """A probe for `wait_for`: the awaited answer equals `expected`."""
    return await answer == expected


async def wait_for(
    probe: Callable[[], Awaitable[T | None] | T | None],
    deadline_s: float = 20.0,
    what: str = "condition",
) -> T:
    """Poll `probe` (plain or async) until it returns something other than None/False;
    fail at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        answer = probe()
        result = await answer if inspect.isawaitable(answer) else answer
        if result is not None and result is not False:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        await asyncio.sleep(0.02)


class WorkerProcess:
    """`python -m services <command>` in a subprocess, with its own data dir and topics."""

    def __init__(
        self,
        data_dir: Path,
        bootstrap: str | None,
        prefix: str | None = None,
        command: str = "worker",
        env: dict[str, str] | None = None,
        own_group: bool = False,
    ):
        self.own_group = own_group  # a process group of its own, as a shell gives `make run`
        self.data_dir = data_dir
        self.bootstrap = bootstrap
        self.prefix = prefix or f"t{uuid.uuid4().hex[:10]}"
        self.command = command
        self.port = free_port()
        self.extra_env = env or {}
        self.app_id, self.api_key = next(iter(APPS.items()))
        self.process: asyncio.subprocess.Process | None = None
        self.log_path = data_dir / f"{command}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str, app_id: str | None = None, key: str | None = None) -> str:
        app = app_id or self.app_id
        return f"{self.base_url}/{app}/{key or APPS.get(app, 'nokey')}/{path}"

    def admin_url(self, path: str, app_id: str | None = None) -> str:
        """`/admin/{app_id}/{path}`: send it with `admin_headers()`."""
        return f"{self.base_url}/admin/{app_id or self.app_id}/{path}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}
        env.update(
            DEVREG_DATA_DIR=str(self.data_dir),
            DEVREG_HTTP_PORT=str(self.port),
            DEVREG_TOPIC_PREFIX=self.prefix,
            DEVREG_GROUP_ID=f"{self.prefix}-group",
            DEVREG_APPS=",".join(f"{a}:{k}:{ADMIN_KEYS[a]}" for a, k in APPS.items()),
            # The custom-domain form `/api/...` serves the first app (the JS SDK test uses it).
            DEVREG_DOMAIN_APP=next(iter(APPS)),
            DEVREG_TOKEN_KEYS=TOKEN_KEYS,
            DEVREG_KEK=TEST_KEK,
            DEVREG_PARTITIONS=str(PARTITIONS),
            # The session broker is Tansu, which holds a group join for half the session
            # timeout; `devreg run` picks this itself, a worker on KAFKA_BOOTSTRAP cannot know.
            DEVREG_SESSION_TIMEOUT_MS="2000",
        )
        if self.bootstrap:
            env["KAFKA_BOOTSTRAP"] = self.bootstrap
        env.update(self.extra_env)
        return env

    async def start(self, deadline_s: float = 40.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services",
                self.command,
                env=self.environment(),
                stdout=log,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=self.own_group,
            )
        await wait_for(self._ready, deadline_s, f"devreg {self.command} to be ready")

    async def _ready(self) -> bool:
        assert self.process is not None
        if self.process.returncode is not None:
            raise AssertionError(f"devreg exited with {self.process.returncode}:\n{self.log()}")
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
                session.get(f"{self.base_url}/readyz") as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False  # not listening yet, or something else holds the port

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    async def stop(self, sig: int = signal.SIGTERM, deadline_s: float = 30.0) -> int:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return process.returncode if process and process.returncode is not None else 0
        process.send_signal(sig)
        try:
            return await asyncio.wait_for(process.wait(), deadline_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            message = f"devreg did not stop within {deadline_s}s:\n{self.log()}"
            raise AssertionError(message) from None

    async def kill(self) -> None:
        await self.stop(signal.SIGKILL)

    async def kill_group(self) -> None:
        """SIGKILL the whole process group at once (`own_group`), as `kill -9 -PGID` does."""
        process, self.process = self.process, None
        assert process is not None
        assert self.own_group
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()

    async def __aenter__(self) -> WorkerProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def renewing_run(data_dir: Path, every: int = 100, **env: str) -> WorkerProcess:
    """`devreg run` on a broker port of its own, renewing its broker's partitions every
    `every` records per partition (DEVREG_EMBEDDED_ROLLOVER); `env` adds to its environment."""
    settings = {
        "DEVREG_BROKER_PORT": str(free_port()),
        "DEVREG_EMBEDDED_ROLLOVER": str(every),
        **env,
    }
    return WorkerProcess(data_dir, None, command="run", env=settings)


async def devreg(
    worker: WorkerProcess, *args: str, stdin: bytes | None = None, deadline_s: float = 60
) -> tuple[int, bytes, str]:
    """`python -m services <args>` with the worker's environment: (exit code, stdout, stderr)."""
    pipe, command = asyncio.subprocess.PIPE, (sys.executable, "-m", "services", *args)
    process = await asyncio.create_subprocess_exec(
        *command, env=worker.environment(), stdin=pipe, stdout=pipe, stderr=pipe
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), deadline_s)
    assert process.returncode is not None
    return process.returncode, out, err.decode()


def admin_headers(app_id: str | None = None) -> dict[str, str]:
    """The header that opens an app's admin routes."""
    return {ADMIN_HEADER: ADMIN_KEYS[app_id or next(iter(APPS))]}


async def call(
    method: str, url: str, json: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=json, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


async def write_as_client(
    method: str, url: str, json: Any = None, deadline_s: float = 30.0
) -> tuple[int, Any]:
    """A POST or DELETE as a client sends it: one shed by admission control (503, code 5904:
    too many writes waiting, as while the embedded broker is renewed on a loaded machine) is
    sent again after its Retry-After, within `deadline_s`. A shed write had no effect."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while True:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, json=json) as response,
        ):
            status, answer = response.status, await response.json(content_type=None)
            retry_after = float(response.headers.get("Retry-After", "1"))
        shed = status == 503 and isinstance(answer, dict) and answer.get("code") == 5904
        if not shed or loop.time() + retry_after > deadline:
            return status, answer
        await asyncio.sleep(retry_after)  # what the server asked for: not a guess


def registration(device_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "deviceToken": f"token-{device_id}",
        "deviceId": device_id,
        "os": "ANDROID",
        "osVersion": "14",
    }
    body.update(fields)
    return body


async def metric(worker: WorkerProcess, sample: str, **labels: str) -> float:
    """A sample's value on the worker's /metrics page (0 when absent), e.g.
    `metric(w, "devreg_read_back_resumes_total", reason="gap")`."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{worker.base_url}/metrics") as response,
    ):
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    return 0.0
