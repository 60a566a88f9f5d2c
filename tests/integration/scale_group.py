"""Helpers for the scale-out tests: a group of `devreg worker` processes on the session broker,
bulk registration (HTTP through a chosen worker, or commands straight to Kafka), reading every
device back, channel pages, and `devreg verify` against one worker's own projection."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp

from events import RegisterDevice
from services.log.broker import EmbeddedBroker
from tests.support import APPS, WorkerProcess, admin_headers, now_ms
from tests.topics import publish_commands

PARTITIONS = 6
CONCURRENCY = 16  # requests in flight: enough to keep the workers busy on two cores
SHED_DEADLINE_S = 30.0  # how long a write shed by admission control (503, 5904) is retried
CHANNEL_GROUPS = 3
APP = next(iter(APPS))  # the app WorkerProcess.url() addresses


def member(broker: EmbeddedBroker, data_dir: Path, prefix: str) -> WorkerProcess:
    """A worker of the group: its own data dir and port, advertising its own URL."""
    worker = WorkerProcess(
        data_dir, broker.bootstrap, prefix=prefix, env={"DEVREG_PARTITIONS": str(PARTITIONS)}
    )
    worker.extra_env["DEVREG_ADVERTISED_URL"] = worker.base_url
    return worker


def device(i: int) -> str:
    return f"dev-{i:05d}"


def channels_of(i: int) -> list[str]:
    return ["all", f"group-{i % CHANNEL_GROUPS}"]


def token(i: int, generation: int = 0) -> str:
    return f"token-{i:05d}-g{generation}"


async def readiness(worker: WorkerProcess) -> dict[str, Any] | None:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{worker.base_url}/readyz") as r,
        ):
            return await r.json() if r.status == 200 else None  # type: ignore[no-any-return]
    except aiohttp.ClientError:
        return None


async def group_formed(workers: list[WorkerProcess]) -> dict[str, list[int]] | None:
    """Every worker ready, knowing exactly these members, owning disjoint non-empty sets of
    partitions that cover all of them: the ownership (worker URL -> partitions), else None."""
    answers = [await readiness(w) for w in workers]
    states = [s for s in answers if s is not None]
    if len(states) < len(workers):
        return None
    urls = {w.base_url for w in workers}
    if any(set(s["workers"]) != urls for s in states):
        return None
    owned = {w.base_url: sorted(s["partitions"]) for w, s in zip(workers, states, strict=True)}
    every = sorted(p for ps in owned.values() for p in ps)
    if every != list(range(PARTITIONS)) or not all(owned.values()):
        return None
    return owned


async def register_over_http(
    through: Callable[[int], WorkerProcess], numbers: Iterable[int], generation: int = 0
) -> None:
    """POST each device to the worker `through(i)` picks; every answer must be a 200. A 503
    with code 5904 (too many writes waiting: admission control sheds load while a loaded
    machine lags) is retried after its Retry-After, as a client does, within a deadline."""
    semaphore = asyncio.Semaphore(CONCURRENCY)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            body = {
                "deviceToken": token(i, generation),
                "deviceId": device(i),
                "os": "ANDROID",
                "osVersion": "14",
                "channels": channels_of(i),
            }
            url = through(i).url("messaging/registrations")
            deadline = loop.time() + SHED_DEADLINE_S
            while True:
                async with semaphore, session.post(url, json=body) as r:
                    answer = await r.json(content_type=None)
                    retry_after = float(r.headers.get("Retry-After", "1"))
                shed = r.status == 503 and answer.get("code") == 5904
                if not shed or loop.time() + retry_after > deadline:
                    break
                await asyncio.sleep(retry_after)  # what the server asked for: not a guess
            assert r.status == 200, (device(i), r.status, answer)

        await asyncio.gather(*(one(i) for i in numbers))


async def publish_registrations(bootstrap: str, topic: str, numbers: Iterable[int]) -> None:
    """RegisterDevice commands straight to the commands topic (tests/support.py)."""
    issued_at = now_ms()
    commands = (
        RegisterDevice(
            command_id=f"scale-{i}",
            app_id=APP,
            device_id=device(i),
            issued_at=issued_at,
            device_token=token(i),
            os="ANDROID",
            os_version="14",
            channels=tuple(channels_of(i)),
        )
        for i in numbers
    )
    await publish_commands(bootstrap, topic, commands, PARTITIONS)


async def unreadable(
    through: Callable[[int], WorkerProcess], numbers: Iterable[int], generation: int = 0
) -> list[str]:
    """The devices a GET through `through(i)` does not answer with the expected registration
    (token of `generation`, both channels); empty when every one reads back right."""
    semaphore = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> str | None:
            url = through(i).url(f"messaging/registrations/{device(i)}")
            async with semaphore, session.get(url) as r:
                body = await r.json(content_type=None)
            if r.status != 200:
                return f"{device(i)}: {r.status} {body}"
            [found] = body
            expected = (token(i, generation), sorted(channels_of(i)))
            if (found["deviceToken"], sorted(found["channels"])) != expected:
                return f"{device(i)}: {found}"
            return None

        answers = await asyncio.gather(*(one(i) for i in numbers))
    return [a for a in answers if a is not None]


async def channel_listing(worker: WorkerProcess, channel: str, limit: int = 997) -> list[str]:
    """Every device id on `channel`, page by page (fan-out across the group)."""
    seen: list[str] = []
    cursor = ""
    async with aiohttp.ClientSession(headers=admin_headers()) as session:
        while True:
            url = worker.url(f"messaging/channels/{channel}/devices?limit={limit}{cursor}")
            async with session.get(url) as r:
                body = await r.json(content_type=None)
                assert r.status == 200, body
            seen.extend(d["deviceId"] for d in body["devices"])
            if body["nextCursor"] is None:
                return seen
            cursor = f"&cursor={body['nextCursor']}"


async def _channels(worker: WorkerProcess) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(headers=admin_headers()) as session,
        session.get(worker.url("messaging/channels")) as r,
    ):
        body = await r.json(content_type=None)
        assert r.status == 200, body
    return body  # type: ignore[no-any-return]


async def channel_counts(worker: WorkerProcess) -> dict[str, int]:
    """Devices per channel, summed over the group's workers (fan-out)."""
    return {c["channel"]: c["devices"] for c in (await _channels(worker))["channels"]}


async def applied(worker: WorkerProcess) -> dict[int, int]:
    """The events position each partition's owner has applied, as a channel query through
    `worker` reports it (`freshness`: each worker answers for the partitions it owns)."""
    offsets = (await _channels(worker))["freshness"]["appliedOffsets"]
    return {int(p): offset for p, offset in offsets.items()}


async def caught_up(worker: WorkerProcess, target: dict[int, int]) -> bool:
    """Every partition's owner, as seen through `worker`, has applied at least `target`."""
    now = await applied(worker)
    return all(now.get(p, -1) >= offset for p, offset in target.items())


async def verify(worker: WorkerProcess) -> tuple[int, list[dict[str, Any]], str]:
    """`devreg verify --quiet` with the worker's environment (its data dir, so its own
    projection): (exit code, the JSON lines it printed, stderr)."""
    pipe = asyncio.subprocess.PIPE
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services",
        "verify",
        "--quiet",
        env=worker.environment(),
        stdout=pipe,
        stderr=pipe,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, [json.loads(line) for line in out.splitlines()], err.decode()
