"""Checkpoints of a worker store's write-ahead log, on a thread of their own.

SQLite checkpoints a WAL file in the commit that takes it past `wal_autocheckpoint` pages:
that commit copies every page the WAL holds into the database file and syncs it. A worker's
stores run their SQL on the event loop's thread (projections/sqlite.py, InlineConnection), so
every HTTP request waiting on the worker waited for that copy too. A store opened with
`Checkpointer` turns autocheckpointing off, and a thread with its own connection checkpoints
the file instead, PASSIVE (it waits for no writer and no reader: what it cannot copy yet it
copies next time) whenever the WAL has grown past `every_bytes`. SQLite's C code runs without
the GIL, so the copy runs beside the loop. Durability is SQLite's either way: a checkpoint
only moves committed pages from the WAL into the database file.

The projection's rebuild swap takes the live file out of WAL mode (projections/swap.py),
which no other connection may hold open: it stops the thread first, and the swapped-in file's
connection has a thread of its own.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# A WAL past this is checkpointed: as often as the stores' wal_autocheckpoint of 10,000 pages
# did in their commits (projections/sqlite.py), so the copying and syncing are no more than
# they were; a smaller WAL would copy a page rewritten meanwhile more often.
EVERY_BYTES = 40 << 20
POLL_S = 0.05
_AFTER_FAILURE_S = 5.0


class Checkpointer:
    def __init__(self, path: Path, every_bytes: int = EVERY_BYTES):
        self._path = path
        self._wal = Path(f"{path}-wal")
        self._every = every_bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"checkpoints {path.name}")
        self.checkpoints = 0

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread and closes its connection (blocks until it has)."""
        self._stop.set()
        self._thread.join()

    def _due(self) -> bool:
        try:
            return os.stat(self._wal).st_size > self._every
        except FileNotFoundError:
            return False

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, check_same_thread=False)
        try:
            wait = POLL_S
            while not self._stop.wait(wait):
                wait = POLL_S
                if not self._due():
                    continue
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:
                    # The WAL keeps growing until the next try: said, never hidden.
                    log.warning(
                        "checkpoint of %s failed, again in %.0f s: %s",
                        self._path,
                        _AFTER_FAILURE_S,
                        exc,
                    )
                    wait = _AFTER_FAILURE_S
        finally:
            conn.close()
