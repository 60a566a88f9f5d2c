"""How `devreg rebuild` and a running worker talk while a rebuilt projection file is swapped
in (projections/swap.py is the worker's side, services/rebuild/swap_in.py the rebuild's).

The worker has no admin route for this (and needs none): they talk through small JSON files
beside the live projection, `<live>.swap-*`:

  rebuild  folds the log into `<live>.rebuild` up to the live file's positions, then writes
           `swap-request` {id, candidate}
  worker   takes the store's lock (the projector pauses between batches; queries go on),
           writes `swap-paused` {id, positions}: the exact positions it holds still
  rebuild  folds the candidate up to exactly those positions, closes it, writes `swap-ready`
  worker   checks the candidate's positions, switches the files, releases the lock and
           writes `swap-done` {id, ok, error}
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import uuid
from pathlib import Path

import msgspec

from projections.positions import Position

READY_TIMEOUT_S = 30.0  # the projector stays paused at most this long for the final catch-up


class SwapRefused(RuntimeError):
    """The swap cannot be done safely; the live file stays as it is."""


class SwapMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    at_ms: int
    candidate: str | None = None
    positions: list[Position] = []
    ok: bool | None = None
    error: str | None = None
    paused_ms: int | None = None


_decoder = msgspec.json.Decoder(SwapMessage)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    return uuid.uuid4().hex


class SwapFiles:
    """The candidate and the handshake files of one live projection file."""

    def __init__(self, live: Path):
        self.live = live
        self.candidate = self._sibling(".rebuild")
        self.request = self._sibling(".swap-request")
        self.paused = self._sibling(".swap-paused")
        self.ready = self._sibling(".swap-ready")
        self.done = self._sibling(".swap-done")

    def _sibling(self, suffix: str) -> Path:
        return self.live.with_name(self.live.name + suffix)

    def write(self, path: Path, message: SwapMessage) -> None:
        """Atomically: a reader never sees half a message."""
        part = path.with_name(path.name + ".part")
        part.write_bytes(msgspec.json.encode(message))
        os.replace(part, path)

    def read(self, path: Path) -> SwapMessage | None:
        try:
            return _decoder.decode(path.read_bytes())
        except (FileNotFoundError, msgspec.DecodeError):
            return None

    def clear(self, *paths: Path) -> None:
        for path in paths:
            path.unlink(missing_ok=True)


def fsync_dir(directory: Path) -> None:
    """A rename survives a power cut only once its directory is on disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stored_positions(path: Path) -> list[Position]:
    """The kafka_offsets of a projection file, read-only (another process may be writing)."""
    with contextlib.closing(sqlite3.connect(read_only_uri(path), uri=True)) as db:
        rows = db.execute("SELECT topic, partition, next_offset, fingerprint FROM kafka_offsets")
        return sorted((Position(*row) for row in rows), key=position_key)


def read_only_uri(path: Path) -> str:
    return f"{path.resolve().as_uri()}?mode=ro"


def position_key(position: Position) -> tuple[str, int]:
    return position.topic, position.partition
