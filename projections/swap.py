"""Swapping a rebuilt projection file in under a running worker, with no failed query: the
worker's side of the handshake with `devreg rebuild` (projections/swap_files.py).

The switch never closes the connection queries use before the new one is open. The old
connection leaves WAL mode and keeps a shared lock in exclusive locking mode: from then on it
reads only its own (soon unlinked) file and never looks for a `-wal` file by name, so the new
file can be renamed over the live path and opened (with its own `-wal`) while the old one still
answers. Then new queries go to the new connection; the old one is closed a little later,
once reads already in flight on it have finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, cast

import aiosqlite
import msgspec

from projections.fold import ProjectionError
from projections.positions import Position
from projections.sqlite import InlineConnection
from projections.swap_files import (
    READY_TIMEOUT_S,
    SwapFiles,
    SwapMessage,
    SwapRefused,
    fsync_dir,
    now_ms,
    position_key,
    stored_positions,
)


class Swappable(Protocol):
    """What a swap needs of the live store (projections/store.py ProjectionStore)."""

    lock: asyncio.Lock

    async def positions(self) -> list[Position]: ...

    def release_file(self) -> None: ...

    def reclaim_file(self) -> None: ...

    def swap_connection(self, conn: aiosqlite.Connection) -> None: ...


log = logging.getLogger(__name__)
POLL_S = 0.1  # how often an idle worker looks for a request: a stat() call
REQUEST_TTL_S = 60.0  # an older request was left by a rebuild that died: ignored
RETIRE_AFTER_S = 5.0  # reads in flight on the old connection finish well within this
MODE_SWITCH_TIMEOUT_S = 5.0

Connect = Callable[[Path], Awaitable[aiosqlite.Connection]]


class SwapWatcher:
    """Runs in the worker, beside its ProjectionStore: answers swap requests."""

    def __init__(self, store: Swappable, conn: aiosqlite.Connection, live: Path, connect: Connect):
        self._store, self._files, self._connect = store, SwapFiles(live), connect
        self._conn = conn  # the store's connection: only this watcher ever replaces it
        self._retiring: set[asyncio.Task[None]] = set()
        self._task = asyncio.ensure_future(self._watch())

    async def close(self) -> None:
        for task in (self._task, *self._retiring):
            task.cancel()
        await asyncio.gather(self._task, *self._retiring, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            if self._files.request.exists():
                try:
                    await self._serve()
                except Exception:  # unreadable files, say: drop the request, keep watching
                    log.exception("cannot answer the swap request %s", self._files.request)
                    self._files.clear(self._files.request)

    async def _serve(self) -> None:
        files = self._files
        request = files.read(files.request)
        if request is None or now_ms() - request.at_ms > REQUEST_TTL_S * 1000:
            log.warning("ignoring a stale or unreadable swap request %s", files.request)
            files.clear(files.request)
            return
        started = time.monotonic()
        async with self._store.lock:
            try:
                await self._swap(request)
                result = SwapMessage(id=request.id, at_ms=now_ms(), ok=True)
                log.info("swapped in the rebuilt projection %s", files.live)
            except SwapRefused as exc:
                result = SwapMessage(id=request.id, at_ms=now_ms(), ok=False, error=str(exc))
                log.warning("projection swap refused: %s", exc)
            except Exception as exc:  # the watcher must live on; the live file is kept
                log.exception("projection swap failed")
                result = SwapMessage(id=request.id, at_ms=now_ms(), ok=False, error=repr(exc))
            paused_ms = round((time.monotonic() - started) * 1000)
        files.clear(files.request, files.paused, files.ready)
        files.write(files.done, msgspec.structs.replace(result, paused_ms=paused_ms))

    async def _swap(self, request: SwapMessage) -> None:
        files = self._files
        positions = sorted(await self._store.positions(), key=position_key)
        files.write(files.paused, SwapMessage(id=request.id, at_ms=now_ms(), positions=positions))
        await self._wait_ready(request.id)
        if files.candidate.with_name(files.candidate.name + "-wal").exists():
            raise SwapRefused(f"{files.candidate} was not closed cleanly (it has a -wal file)")
        try:
            found = await asyncio.to_thread(stored_positions, files.candidate)
        except sqlite3.Error as exc:
            raise SwapRefused(f"cannot read {files.candidate}: {exc}") from exc
        if found != positions:
            raise SwapRefused(f"{files.candidate} is at {found}, the live file at {positions}")
        old = self._conn
        self._store.release_file()
        try:
            await _leave_wal(old)
        except BaseException:
            self._store.reclaim_file()
            raise
        try:
            if files.live.with_name(files.live.name + "-wal").exists():
                raise SwapRefused(f"{files.live}-wal is still there: another process has it open")
            os.replace(files.candidate, files.live)
        except BaseException:
            await _back_to_wal(old)
            self._store.reclaim_file()
            raise
        fsync_dir(files.live.parent)
        failure: Exception | None = None
        try:
            new = await self._connect(files.live)
        except Exception as exc:
            # The old connection must never write again: its journal would be created by the
            # live file's name, which is now the new file. The worker stops at its next batch;
            # a restart opens the new file.
            failure = exc
            reason = f"cannot open the swapped-in projection {files.live}: {exc!r}"
            new = cast(aiosqlite.Connection, _Unusable(reason))
        self._store.swap_connection(new)
        self._conn = new
        task = asyncio.ensure_future(_retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        if failure is not None:
            raise SwapRefused(f"swapped, but cannot open {files.live}: {failure!r}")

    async def _wait_ready(self, request_id: str) -> None:
        files, deadline = self._files, time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            ready = files.read(files.ready)
            if ready is not None and ready.id == request_id:
                return
            if not files.request.exists():
                raise SwapRefused("the rebuild withdrew its request")
            await asyncio.sleep(0.01)
        raise SwapRefused(f"the rebuild was not ready within {READY_TIMEOUT_S:.0f}s")


class _Unusable:
    """Stands in for a connection that must not be used: any use raises."""

    def __init__(self, reason: str):
        self._reason = reason

    def __getattr__(self, name: str) -> Any:
        raise ProjectionError(self._reason)


async def _leave_wal(conn: aiosqlite.Connection) -> None:
    """Rollback-journal mode plus a retained shared lock: the connection keeps reading its own
    file and stops looking for a `-wal` file by name (see the module docstring). Its
    checkpoints' thread is stopped first: its connection would hold the file in WAL mode."""
    if isinstance(conn, InlineConnection):
        await conn.stop_checkpoints()
    try:
        await _switch_out_of_wal(conn)
    except BaseException:
        if isinstance(conn, InlineConnection):
            conn.restart_checkpoints()
        raise


async def _switch_out_of_wal(conn: aiosqlite.Connection) -> None:
    with contextlib.suppress(sqlite3.OperationalError):  # a read in flight: the switch does it
        await _pragma(conn, "PRAGMA wal_checkpoint(TRUNCATE)")
    deadline = time.monotonic() + MODE_SWITCH_TIMEOUT_S
    while True:
        try:
            mode = await _pragma(conn, "PRAGMA journal_mode=DELETE")
            if mode == "delete":
                break
            reason = f"journal mode is still {mode}"
        except sqlite3.OperationalError as exc:
            # A read in flight on this connection, or another process holding the file open.
            reason = str(exc)
        if time.monotonic() > deadline:
            raise SwapRefused(f"cannot take the live projection out of WAL mode: {reason}")
        await asyncio.sleep(0.01)
    try:
        await _pragma(conn, "PRAGMA locking_mode=EXCLUSIVE")
        await _pragma(conn, "SELECT count(*) FROM kafka_offsets")  # the shared lock, kept now
    except BaseException:
        await _back_to_wal(conn)
        raise


async def _back_to_wal(conn: aiosqlite.Connection) -> None:
    await _pragma(conn, "PRAGMA locking_mode=NORMAL")
    await _pragma(conn, "SELECT count(*) FROM kafka_offsets")  # releases the retained lock
    await _pragma(conn, "PRAGMA journal_mode=WAL")
    if isinstance(conn, InlineConnection):
        conn.restart_checkpoints()


async def _pragma(conn: aiosqlite.Connection, sql: str) -> Any:
    """Runs `sql` to completion: a statement left unfinished holds a read transaction."""
    async with conn.execute(sql) as cursor:
        row = await cursor.fetchone()
    return row[0] if row else None


async def _retire(conn: aiosqlite.Connection) -> None:
    try:
        await asyncio.sleep(RETIRE_AFTER_S)
    finally:
        await conn.close()
