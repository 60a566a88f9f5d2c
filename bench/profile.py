"""Summarise a raw py-spy profile (collapsed stacks): where the samples went.

    python -m bench.profile prof/ingest-100000-004.txt [--top 25] [--match services/]

Self time is the innermost frame of each sample; inclusive time counts a function once per
sample it appears in. Line numbers are dropped so a function's lines add up.
"""

from __future__ import annotations

import argparse
import re
import signal
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)")


def summarise(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    total, own, inclusive = 0, Counter[str](), Counter[str]()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    return total, own, inclusive


def main() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` is fine
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="inclusive list: only frames containing this")
    args = parser.parse_args()
    total, own, inclusive = summarise(args.profile)
    print(f"{total} samples in {args.profile}")
    print("\nself:")
    for frame, samples in own.most_common(args.top):
        print(f"  {samples / total:6.1%}  {frame}")
    print("\ninclusive:")
    chosen = [(f, n) for f, n in inclusive.most_common() if args.match in f][: args.top]
    for frame, samples in chosen:
        print(f"  {samples / total:6.1%}  {frame}")


if __name__ == "__main__":
    main()
