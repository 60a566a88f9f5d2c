"""One process's share of a parallel rebuild (services/parallel_build.py starts it).

`python -m services.build_part FILE TOPIC BOOTSTRAP PARTITIONS [--stops JSON]` folds those
partitions of the events topic (comma-separated; `--stops`: partition -> offset to stop
before, else to the end of the log) into the fresh file FILE, as a rebuild does in its own
process, but leaves out the history's unique index: the merge of the parts adds it once.
stdout carries NDJSON `PartLine`s, `{"events": n}` after each batch read and then
`{"report": BuildReport}`; a failure exits with status 1 and says why on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from projections.fold import ProjectionError
from services import event_loop
from services.build import Build, BuildReport, Stops
from services.config import load_settings
from services.log_reader import LogError, LogReader
from services.progress import Progress

_encoder = msgspec.json.Encoder()


class PartLine(msgspec.Struct, omit_defaults=True):
    events: int = 0
    report: BuildReport | None = None


def write_line(line: PartLine) -> None:
    sys.stdout.buffer.write(_encoder.encode(line) + b"\n")
    sys.stdout.buffer.flush()


class PipedProgress(Progress):
    """Counts go to the parent, which shows the progress of all the parts as one."""

    def __init__(self) -> None:
        super().__init__("part", total=0, quiet=True)  # total: the parent knows it

    def advance(self, n: int) -> None:
        super().advance(n)
        write_line(PartLine(events=n))


async def fold_part(
    path: Path, topic: str, bootstrap: str, partitions: set[int], stops: Stops | None
) -> BuildReport:
    build = await Build.fresh(path, topic, PipedProgress(), alone=True)
    try:
        async with LogReader(bootstrap) as reader:
            await build.extend(reader, stops, only=partitions)
    finally:
        await build.store.close()
    return build.report()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.build_part", description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("topic")
    parser.add_argument("bootstrap")
    parser.add_argument("partitions", type=lambda text: {int(p) for p in text.split(",")})
    parser.add_argument("--stops", type=lambda text: msgspec.json.decode(text, type=Stops))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    loop = load_settings(os.environ).event_loop  # the parent's settings: same environment
    fold = fold_part(args.file, args.topic, args.bootstrap, args.partitions, args.stops)
    try:
        report = event_loop.run(fold, loop)
    except (LogError, ProjectionError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 1
    write_line(PartLine(report=report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
