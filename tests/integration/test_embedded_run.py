"""`devreg run` (what `make run` starts): the embedded broker, and the log kept across stops."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from services.log.broker import free_port
from tests.support import WorkerProcess, call, devreg, registration, wait_for


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def embedded(data_dir: Path, broker_port: int) -> WorkerProcess:
    return WorkerProcess(
        data_dir, None, command="run", env={"DEVREG_BROKER_PORT": str(broker_port)}
    )


async def register(run: WorkerProcess, device_id: str, channel: str) -> None:
    url = run.url("messaging/registrations")
    status, body = await call("POST", url, json=registration(device_id, channels=[channel]))
    assert status == 200, body


async def channels_of(run: WorkerProcess, device_id: str) -> tuple[int, object]:
    status, body = await call("GET", run.url(f"messaging/registrations/{device_id}"))
    return status, body[0]["channels"] if status == 200 else body["code"]


async def test_given_a_clean_stop_when_run_again_then_registrations_are_still_there(
    tmp_path: Path,
) -> None:
    # Given `devreg run` on its embedded broker, with one registration
    broker_port = free_port()
    run = embedded(tmp_path / "data", broker_port)
    await run.start()
    try:
        assert port_open(broker_port)
        await register(run, "kept", "news")

        # When it is stopped with Ctrl-C, then started again
        assert await run.stop(signal.SIGINT) == 0
        assert not port_open(broker_port), "the broker subprocess must stop with devreg"
        assert list((tmp_path / "data" / "log").glob("*.seg"))
        await run.start()

        # Then start-up says what it recovered (the command, two events and the outcome, the
        # device's data key and its token claim), the registration is still served, and the
        # device's history continues
        assert "devreg: recovered the log: 6 records" in run.log()
        assert f"{run.prefix}.keys 1, {run.prefix}.outcomes 1, {run.prefix}.tokens 1" in run.log()
        assert await channels_of(run, "kept") == (200, ["news"])
        await register(run, "kept", "sport")
        assert await channels_of(run, "kept") == (200, ["news", "sport"])
        assert "DISCARDED" not in run.log()
    finally:
        await run.stop()


async def test_given_a_lost_projection_when_run_again_then_it_is_rebuilt_from_the_kept_log(
    tmp_path: Path,
) -> None:
    # Given a registry whose broker holds only a short tail of each partition
    broker_port = free_port()
    data = tmp_path / "data"
    run = WorkerProcess(
        data,
        None,
        command="run",
        env={"DEVREG_BROKER_PORT": str(broker_port), "DEVREG_EMBEDDED_TAIL": "2"},
    )
    await run.start()
    try:
        for n in range(30):
            await register(run, f"dev-{n}", "news")
        await run.kill()
        await wait_for(lambda: not port_open(broker_port), 5, "the broker to die with devreg")

        # When its projection is lost, and devreg runs again
        for suffix in ("", "-wal", "-shm"):
            (data / f"projection.sqlite{suffix}").unlink(missing_ok=True)
        await run.start()

        # Then every device is served again: the broker was given all it must read
        for n in range(30):
            assert await channels_of(run, f"dev-{n}") == (200, ["news"])
    finally:
        await run.stop()


async def test_given_an_archive_of_the_export_era_when_run_then_it_becomes_the_kept_log(
    tmp_path: Path,
) -> None:
    # Given a data directory holding only an archive (`devreg export`, as a clean stop wrote
    # it before devreg kept the log itself)
    first = embedded(tmp_path / "first", free_port())
    await first.start()
    try:
        await register(first, "archived", "news")
        code, _, err = await devreg(first, "export", str(tmp_path / "archive.ndjson"))
        assert code == 0, err
    finally:
        await first.stop()
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "archive.ndjson").rename(data / "log-archive.ndjson")

    # When devreg runs on it (with the same topics)
    run = WorkerProcess(
        data, None, first.prefix, command="run", env={"DEVREG_BROKER_PORT": str(free_port())}
    )
    await run.start()
    try:
        # Then the archive became the kept log, and the registry is served
        assert await channels_of(run, "archived") == (200, ["news"])
        assert (data / "log-archive.ndjson.adopted").exists()
        assert list((data / "log").glob("*.seg"))
    finally:
        await run.stop()
