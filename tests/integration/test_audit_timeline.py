"""`devreg history` and `devreg replay` on a terminal print a readable timeline, one line per
event; with --json, or piped, they keep printing JSON (test_audit.py reads that)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import sys
import uuid

from tests.support import WorkerProcess, call, devreg, registration


async def on_terminal(worker: WorkerProcess, *args: str) -> tuple[int, list[str]]:
    """`python -m services <args>` with its stdout on a pseudo-terminal: (exit code, lines)."""
    master, terminal = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services",
        *args,
        env=worker.environment(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=terminal,
        stderr=asyncio.subprocess.DEVNULL,
    )
    os.close(terminal)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the program closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    try:
        await asyncio.wait_for(asyncio.gather(asyncio.to_thread(drain), process.wait()), 60)
    finally:
        os.close(master)
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    assert process.returncode is not None
    return process.returncode, text.splitlines()


async def test_given_a_device_history_on_a_terminal_then_one_line_per_event(
    devreg_worker: WorkerProcess,
) -> None:
    # Given a device registered, moved to a new token and channel, then unregistered
    device = f"tty-{uuid.uuid4().hex[:8]}"
    url = devreg_worker.url("messaging/registrations")
    for body in (
        registration(device, channels=["news"], deviceToken="t1"),
        registration(device, channels=["sport"], deviceToken="t2"),
    ):
        status, _ = await call("POST", url, json=body)
        assert status == 200
    status, _ = await call("DELETE", f"{url}/{device}")
    assert status == 200
    app = devreg_worker.app_id

    # When its history is printed on a terminal
    code, lines = await on_terminal(devreg_worker, "history", app, device, "--quiet")

    # Then a heading, a sentence per event, and the chain's verdict
    assert code == 0, lines
    assert lines[0] == f"{app} / {device}"
    events = lines[1:-1]
    sentences = [line for line in events if " v" in line]
    assert len(sentences) == 3, lines
    assert "v1  registered on news (ANDROID 14, token t1)" in sentences[0]
    assert "v2  added to sport; token changed from t1 to t2" in sentences[1]
    assert "v3  unregistered (was on news, sport)" in sentences[2]
    assert all(line.endswith("ok]") for line in sentences)
    assert lines[-1].startswith("hash chain intact: 3 events")

    # And with --json, on the same terminal, the JSON scripts read
    code, lines = await on_terminal(devreg_worker, "history", app, device, "--quiet", "--json")
    assert code == 0
    assert json.loads("".join(lines))["chain"]["intact"] is True
    # And piped, JSON as before
    code, out, _ = await devreg(devreg_worker, "history", app, device, "--quiet")
    assert json.loads(out)["chain"]["events"] == 3

    # And replay, on a terminal, is a line per event too; piped, NDJSON
    code, lines = await on_terminal(
        devreg_worker, "replay", "--app", app, "--device", device, "--quiet"
    )
    assert code == 0
    assert len(lines) == 3
    assert f"{app}/{device}" in lines[0]
    assert "registered on news (ANDROID 14, token t1)" in lines[0]
    code, out, _ = await devreg(devreg_worker, "replay", "--app", app, "--device", device)
    assert [json.loads(line)["event"]["version"] for line in out.splitlines()] == [1, 2, 3]
