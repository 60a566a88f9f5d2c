"""One process's share of a parallel rebuild (services/rebuild/parallel.py starts it).

`python -m services.rebuild.part FILE TOPIC` folds the records it is sent on stdin into the
fresh file FILE, as a rebuild does in its own process, but leaves out the history's unique
index (the merge of the parts adds it once). stdin carries frames: a 4-byte big-endian
length, then a msgpack list of `Record`s of the events topic (a batch: one transaction); the
end of stdin ends the fold. Once done, stdout carries the `BuildReport`; a failure exits
with status 1 (PROJECTION_ERROR for an event the fold cannot apply: a gap, a broken chain)
and says why on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import msgspec

from projections.fold import ProjectionError
from projections.positions import Record
from services import event_loop
from services.config import load_settings
from services.progress import Progress
from services.rebuild.build import Build, BuildReport

HEADER = 4  # bytes of a frame's length
PROJECTION_ERROR = 3  # exit status: the log cannot be folded (the parent raises ProjectionError)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Record])
# The next frame is read while SQLite writes this one: room for a whole frame (~10k events).
_READ_LIMIT = 8 << 20


def frame(records: list[Record]) -> bytes:
    body = _encoder.encode(records)
    return len(body).to_bytes(HEADER, "big") + body


async def frames(stream: asyncio.StreamReader) -> AsyncIterator[list[Record]]:
    while True:
        try:
            header = await stream.readexactly(HEADER)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return  # the end of the records
        yield _decoder.decode(await stream.readexactly(int.from_bytes(header, "big")))


async def _stdin() -> asyncio.StreamReader:
    stream = asyncio.StreamReader(limit=_READ_LIMIT)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), sys.stdin.buffer)
    return stream


async def fold_part(path: Path, topic: str) -> BuildReport:
    # The parent counts the events it sends: the part keeps its count to itself.
    build = await Build.fresh(path, topic, Progress("part", total=0, quiet=True), alone=True)
    try:
        await build.fold(frames(await _stdin()))
    finally:
        await build.store.close()
    return build.report()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.rebuild.part", description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("topic")
    args = parser.parse_args(argv)
    loop = load_settings(os.environ).event_loop  # the parent's settings: same environment
    try:
        report = event_loop.run(fold_part(args.file, args.topic), loop)
    except ProjectionError as exc:
        print(exc, file=sys.stderr)
        return PROJECTION_ERROR
    except (OSError, asyncio.IncompleteReadError) as exc:
        print(exc, file=sys.stderr)
        return 1
    sys.stdout.buffer.write(msgspec.json.encode(report) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
