"""SIGKILL the whole `devreg run` process group (its embedded broker dies with it) while HTTP
registrations, deletions and short expirations flow. After each restart every acknowledged
change is served; at the end `devreg verify` passes, every hash chain is intact, and the
history and as-of answers taken before each kill are answered the same."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from events import decode_event
from services.log.broker import free_port
from tests.log_checks import assert_chains
from tests.support import (
    WorkerProcess,
    admin_headers,
    devreg,
    now_ms,
    registration,
    sized,
    wait_for,
)

OPS = sized(test=3000, soak=50_000)
DEVICES = sized(test=240, soak=4000)
CLIENTS = 16
KILLS = 3
AUDITED = 12  # devices whose history and as-of are taken before each kill
SHORT_MS = 2500  # a short expiration, from the moment it is sent


class Device:
    """What the acknowledged changes say a device holds: channel -> expiration (or None)."""

    def __init__(self, name: str):
        self.name = name
        self.channels: dict[str, int | None] = {}

    def permanent(self) -> list[str]:
        return sorted(c for c, e in self.channels.items() if e is None)


class Load:
    """Clients that each own some devices and change them one request at a time; a request
    cut off by a kill is sent again once devreg answers again."""

    def __init__(self, run: WorkerProcess, seed: int):
        self.run = run
        self.rng = random.Random(seed)
        self.devices = [Device(f"d{n:04d}") for n in range(DEVICES)]
        self.acknowledged = 0
        self.up = asyncio.Event()
        self.first_delete_unknown: list[str] = []
        self.cut_off = 0  # requests a kill cut off (sent again)
        # Devices with a request sent and not answered yet: a kill leaves its effect unknown
        # until the request is sent again (each client has at most one).
        self.pending: set[str] = set()

    async def client(self, session: aiohttp.ClientSession, mine: list[Device], ops: int) -> None:
        rng = random.Random(self.rng.random())
        for _ in range(ops):
            device = rng.choice(mine)
            self.pending.add(device.name)
            roll = rng.random()
            if device.permanent() and roll < 0.2:
                await self._delete(session, device)
            elif roll < 0.35:
                await self._register(session, device, [f"x{rng.randrange(3)}"], short=True)
            else:
                await self._register(session, device, rng.sample(["a", "b", "c"], 2), short=False)
            self.pending.discard(device.name)
            self.acknowledged += 1

    async def _send(
        self, session: aiohttp.ClientSession, method: str, url: str, body: Any = None
    ) -> tuple[int, Any, bool]:
        """(status, body, whether an earlier try was cut off)."""
        retried = False
        while True:
            await self.up.wait()
            try:
                async with session.request(method, url, json=body) as response:
                    answer = await response.json(content_type=None)
                    if response.status != 503:  # 5900..5902: not acknowledged in time
                        return response.status, answer, retried
            except (aiohttp.ClientError, TimeoutError):
                self.cut_off += 1
            retried = True
            await asyncio.sleep(0.05)  # a retry of the same request, paced

    async def _register(
        self, session: aiohttp.ClientSession, device: Device, channels: list[str], short: bool
    ) -> None:
        url = self.run.url("messaging/registrations")
        while True:
            expiration = now_ms() + SHORT_MS if short else None
            body = registration(device.name, channels=channels, expiration=expiration)
            status, answer, _ = await self._send(session, "POST", url, body)
            if status == 200:
                break
            # A retry after a restart may come after its expiration: send it anew.
            assert short, answer
            assert (status, answer["code"]) == (400, 5004), answer
        for channel in channels:
            device.channels[channel] = expiration

    async def _delete(self, session: aiohttp.ClientSession, device: Device) -> None:
        url = self.run.url(f"messaging/registrations/{device.name}")
        status, answer, retried = await self._send(session, "DELETE", url)
        if status != 200:
            # Only the retry of a delete that took effect before the kill may find it gone.
            assert (status, answer["code"]) == (400, 5001), answer
            if not retried:
                self.first_delete_unknown.append(device.name)
        device.channels.clear()


async def served(run: WorkerProcess, session: aiohttp.ClientSession, device: Device) -> list[str]:
    """The channels GET answers for a device ([] for an unknown one)."""
    url = run.url(f"messaging/registrations/{device.name}")
    async with session.get(url) as response:
        answer = await response.json(content_type=None)
    if response.status == 400 and answer["code"] == 5000:
        return []
    assert response.status == 200, answer
    return sorted(answer[0]["channels"])


async def check_served(run: WorkerProcess, load: Load, exact: bool) -> None:
    """Every acknowledged change is served: the permanent channels exactly, and a short one
    at most until its expiration (`exact`: every expiration has passed)."""
    async with aiohttp.ClientSession() as session:
        for device in load.devices:
            if device.name in load.pending:
                continue  # checked once its request was sent again and answered
            shown = await served(run, session, device)
            if exact:
                assert shown == device.permanent(), device.name
            else:
                assert set(device.permanent()) <= set(shown) <= set(device.channels), device.name


async def audit_answers(run: WorkerProcess, names: list[str], at: int) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    async with aiohttp.ClientSession(headers=admin_headers()) as session:
        for name in names:
            base = run.url(f"messaging/registrations/{name}")
            async with session.get(f"{base}/history?limit=1000") as response:
                history = await response.json(content_type=None)
            async with session.get(f"{base}/as-of/{at}") as response:
                as_of = (response.status, await response.json(content_type=None))
            answers[name] = (history["events"], as_of)
    return answers


async def test_given_http_changes_when_killed_repeatedly_then_every_acknowledged_one_survives(
    tmp_path: Path,
) -> None:
    # Given `devreg run` whose broker is given fresh partitions every few hundred records
    run = WorkerProcess(
        tmp_path / "data",
        None,
        command="run",
        own_group=True,
        env={
            "DEVREG_BROKER_PORT": str(free_port()),
            "DEVREG_EMBEDDED_ROLLOVER": "200",
            "DEVREG_EMBEDDED_TAIL": "20",
        },
    )
    await run.start()
    load = Load(run, seed=18)
    load.up.set()
    audited = [f"h{n:02d}" for n in range(AUDITED)]
    taken: list[tuple[int, dict[str, Any]]] = []
    try:
        async with aiohttp.ClientSession() as session:
            shares = [load.devices[n::CLIENTS] for n in range(CLIENTS)]
            clients = [
                asyncio.ensure_future(load.client(session, mine, OPS // CLIENTS)) for mine in shares
            ]
            for kill in range(1, KILLS + 1):
                # history and as-of of devices changed just now, before the kill
                for name in audited:
                    status, answer, _ = await load._send(
                        session,
                        "POST",
                        run.url("messaging/registrations"),
                        registration(name, channels=[f"k{kill}"]),
                    )
                    assert status == 200, answer
                at = now_ms()
                taken.append((at, await audit_answers(run, audited, at)))

                # When the process group is killed mid-stream, then started again
                await wait_for(
                    lambda k=kill: load.acknowledged >= OPS * k // (KILLS + 1),
                    120,
                    "the load to reach the next kill",
                )
                load.up.clear()
                await run.kill_group()
                await run.start()
                assert "DISCARDED" not in run.log()
                # Then every change acknowledged before the kill is served
                await check_served(run, load, exact=False)
                for at, answers in taken:
                    again = await audit_answers(run, audited, at)
                    for name, (history, as_of) in answers.items():
                        assert again[name][0][: len(history)] == history, name
                        assert again[name][1] == as_of, name
                load.up.set()
            await asyncio.gather(*clients)

        # And, once every short expiration has passed, exactly what was acknowledged
        assert load.first_delete_unknown == []
        latest = max((e for d in load.devices for e in d.channels.values() if e), default=0)
        await asyncio.sleep(max(0.0, (latest - now_ms()) / 1000))

        async def settled() -> bool:
            try:
                await check_served(run, load, exact=True)
            except AssertionError:
                return False
            return True

        await wait_for(settled, 20, "every expiration to be applied")
        # (the kills cut requests off, and the broker was renewed in between)
        assert load.cut_off > 0
        assert "gave the embedded broker fresh partitions" in run.log_path.read_text()
        code, out, err = await devreg(run, "verify", deadline_s=120)
        assert code == 0, err
        code, out, err = await devreg(run, "replay", deadline_s=120)
        assert code == 0, err
        lines = [msgspec.json.decode(line) for line in out.splitlines() if line.strip()]
        events = [decode_event(msgspec.json.encode(line["event"])) for line in lines]
        assert_chains({e.event_id: e for e in events}.values())
    finally:
        load.up.set()
        if run.process is not None:
            await run.stop()
