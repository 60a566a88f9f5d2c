"""The worker's SQLite connections: calls inline on the loop's thread, long queries offloaded.

These also guard the two private aiosqlite methods InlineConnection overrides: if an aiosqlite
release stops routing calls through them, the thread checks below fail.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import aiosqlite

from projections.sqlite import InlineConnection, offloaded, open_db
from projections.tables import SCHEMA, SCHEMA_VERSION
from tests.support import wait_for


async def _thread_of_call(conn: aiosqlite.Connection) -> int:
    async with conn.execute("SELECT thread_id()") as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_given_a_worker_store_then_calls_run_on_the_loop_thread_unless_offloaded(
    tmp_path: Path,
) -> None:
    # Given
    conn = await open_db(tmp_path / "p.sqlite", SCHEMA, SCHEMA_VERSION)
    try:
        assert isinstance(conn, InlineConnection)
        await conn.create_function("thread_id", 0, threading.get_ident)

        # When / Then
        assert await _thread_of_call(conn) == threading.get_ident()
        async with offloaded(conn):
            assert await _thread_of_call(conn) != threading.get_ident()
        assert await _thread_of_call(conn) == threading.get_ident()
    finally:
        await conn.close()


async def test_given_a_threaded_store_then_every_call_runs_on_aiosqlites_thread(
    tmp_path: Path,
) -> None:
    conn = await open_db(tmp_path / "p.sqlite", SCHEMA, SCHEMA_VERSION, threaded=True)
    try:
        assert not isinstance(conn, InlineConnection)
        await conn.create_function("thread_id", 0, threading.get_ident)
        assert await _thread_of_call(conn) != threading.get_ident()
    finally:
        await conn.close()


async def test_given_an_offloaded_query_then_the_loop_runs_and_inline_calls_wait_for_it(
    tmp_path: Path,
) -> None:
    # Given: a query that holds the connection until released
    release = threading.Event()
    conn = await open_db(tmp_path / "p.sqlite", SCHEMA, SCHEMA_VERSION)
    await conn.create_function("held", 0, lambda: int(release.wait(10)))
    order: list[str] = []

    async def long_query() -> None:
        async with offloaded(conn), conn.execute("SELECT held()") as cursor:
            await cursor.fetchall()
        order.append("offloaded")

    async def short_query() -> None:
        async with conn.execute("SELECT 1") as cursor:
            await cursor.fetchall()
        order.append("inline")

    try:
        held = asyncio.ensure_future(long_query())
        await asyncio.sleep(0)  # it takes the connection
        waiting = asyncio.ensure_future(short_query())

        # When: the loop goes on (this very wait runs on it) while the query holds
        ticks = 0

        def loop_is_free() -> bool:
            nonlocal ticks
            ticks += 1
            return ticks >= 5

        await wait_for(loop_is_free, 5)
        assert order == []

        # Then: the inline call ran only after the offloaded query had finished
        release.set()
        await asyncio.gather(held, waiting)
        assert order == ["offloaded", "inline"]
    finally:
        release.set()
        await conn.close()
