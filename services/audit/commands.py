"""The audit subcommands of `devreg`: replay, history, as-of, rebuild, verify, publish, topics.

Each is a small main(settings, args) that reads the log with a plain consumer (no group, no
faust). Data goes to stdout as JSON or NDJSON; progress and errors go to stderr. Exit codes:
0 success, 1 the audit failed (a broken chain, a difference, a rejected command), 2 an error.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from projections.fold import ProjectionError
from services import event_loop
from services.audit import as_of, history, replay, timeline, verify
from services.audit.publish import PublishError, command_from_json, publish
from services.audit.topic_report import describe
from services.clock import now_ms
from services.config import Settings, require_kafka
from services.keys.snapshot import read_snapshot
from services.log.reader import LogError, LogReader
from services.progress import Progress
from services.rebuild import swap_in as rebuild
from services.rebuild.build import RebuildError


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


Main = Callable[[Settings, argparse.Namespace], int]
# What a user can cause or meet (a wrong prefix, a broken log, a busy file): a message, not a
# traceback.
_ERRORS = (
    LogError,
    RebuildError,
    PublishError,
    ProjectionError,
    sqlite3.Error,
    ValueError,
    OSError,
)


def _print(value: Any) -> None:
    sys.stdout.buffer.write(msgspec.json.encode(value) + b"\n")
    sys.stdout.buffer.flush()


def _run(
    settings: Settings, name: str, work: Coroutine[Any, Any, int], endless: bool = False
) -> int:
    async def interruptible() -> int:
        task = asyncio.ensure_future(work)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            # `replay --follow` ends this way: what was printed stands. Anything else was cut
            # short, and says so the way a shell does.
            return 0 if endless else 130

    try:
        return event_loop.run(interruptible(), settings.event_loop)
    except _ERRORS as exc:
        print(f"devreg {name}: {exc}", file=sys.stderr)
        return 2


def _progress(label: str, args: argparse.Namespace) -> Progress:
    return Progress(label, quiet=args.quiet)


def _for_people(args: argparse.Namespace) -> bool:
    """A readable timeline on a terminal; JSON when asked (--json) or piped (scripts)."""
    return not args.json and sys.stdout.isatty()


def _from_offsets(values: list[str]) -> dict[int | None, int]:
    """`N` (every partition) or `P:N` (partition P), each as often as needed."""
    offsets: dict[int | None, int] = {}
    for value in values:
        partition, _, offset = value.rpartition(":")
        if not offset.isdigit() or (partition and not partition.isdigit()):
            raise ValueError(f"--from-offset {value!r} is neither N nor PARTITION:N")
        offsets[int(partition) if partition else None] = int(offset)
    return offsets


def replay_main(settings: Settings, args: argparse.Namespace) -> int:
    try:
        where = replay.Filter(
            app_id=args.app,
            device_id=args.device,
            channel=args.channel,
            types=replay.event_type_tags(args.type),
            since=replay.parse_time(args.since) if args.since else None,
            until=replay.parse_time(args.until) if args.until else None,
        )
        from_offsets = _from_offsets(args.from_offset)
    except ValueError as exc:
        raise_usage(str(exc))
    kafka = require_kafka(settings, "replay")

    async def work() -> int:
        progress = _progress("replay", args)
        people = _for_people(args)
        keys = await read_snapshot(settings, kafka) if people else None
        async with LogReader(kafka) as reader:
            run = replay.Replay(
                reader,
                settings.events_topic,
                where,
                sys.stdout.buffer,
                people,
                keys.open_event if keys else None,
            )
            starts = await run.starts(from_offsets, args.scan)
            try:
                await run.run(starts, args.follow, progress)
            finally:
                progress.finish()
        return 1 if run.undecodable else 0

    return _run(settings, "replay", work(), endless=args.follow)


def history_main(settings: Settings, args: argparse.Namespace) -> int:
    kafka = require_kafka(settings, "history")

    async def work() -> int:
        progress = _progress("history", args)
        found = await history.history(kafka, settings.events_topic, args.app, args.device, progress)
        progress.finish()
        if _for_people(args):
            # Checked on the log's bytes above; shown with the sealed values opened.
            keys = await read_snapshot(settings, kafka)
            events = [
                msgspec.structs.replace(c, event=keys.open_event(c.event)) if keys else c
                for c in found.events
            ]
            lines = timeline.history_lines(args.app, args.device, events, found.chain)
            print("\n".join(lines), flush=True)
        else:
            _print(found)
        return 0 if found.chain.intact else 1

    return _run(settings, "history", work())


def as_of_main(settings: Settings, args: argparse.Namespace) -> int:
    try:
        at_ms = replay.parse_time(args.time)
    except ValueError as exc:
        raise_usage(str(exc))
    if (args.out is None) == (args.device is None and args.channel is None):
        raise_usage("as-of needs --out FILE, or --app with --device or --channel")
    if (args.device or args.channel) and not args.app:
        raise_usage("--device and --channel need --app")
    kafka, topic = require_kafka(settings, "as-of"), settings.events_topic
    out = Path(args.out) if args.out is not None else None
    if out is not None and out.exists() and not args.force:
        raise_usage(f"{out} exists (use --force to replace it)")

    async def work() -> int:
        progress = _progress("as-of", args)
        if out is not None:
            report = await as_of.as_of_file(kafka, topic, as_of.AsOf(at_ms), out, progress)
            _print({"as_of": at_ms, "file": str(out), "build": report})
        elif args.device is not None:
            keys = await read_snapshot(settings, kafka)
            device = await as_of.device_as_of(
                kafka, topic, args.app, args.device, at_ms, progress, keys
            )
            _print({"as_of": at_ms, "app_id": args.app, "device_id": args.device, "device": device})
        else:
            keys = await read_snapshot(settings, kafka)
            devices = await as_of.channel_as_of(
                kafka, topic, args.app, args.channel, at_ms, progress, keys
            )
            _print(
                {"as_of": at_ms, "app_id": args.app, "channel": args.channel, "devices": devices}
            )
        progress.finish()
        return 0

    return _run(settings, "as-of", work())


def raise_usage(message: str) -> NoReturn:
    print(f"devreg: {message}", file=sys.stderr)
    raise SystemExit(2)


def rebuild_main(settings: Settings, args: argparse.Namespace) -> int:
    kafka, live = require_kafka(settings, "rebuild"), settings.projection_path

    async def work() -> int:
        progress = _progress("rebuild", args)
        if args.offline:
            report = await rebuild.rebuild_offline(
                live, settings.events_topic, kafka, progress, args.processes
            )
        else:
            report = await rebuild.rebuild_online(
                live, settings.events_topic, kafka, progress, args.wait, args.processes
            )
        progress.finish()
        _print(report)
        return 0

    return _run(settings, "rebuild", work())


def verify_main(settings: Settings, args: argparse.Namespace) -> int:
    kafka, live = require_kafka(settings, "verify"), settings.projection_path
    if not live.exists():
        raise_usage(f"no live projection at {live}")

    async def work() -> int:
        progress = _progress("verify", args)
        topic = settings.events_topic
        summary = await verify.verify(live, topic, kafka, progress, _print, args.processes)
        progress.finish()
        _print(summary)
        return 0 if summary.verdict == "pass" else 1

    return _run(settings, "verify", work())


def publish_main(settings: Settings, args: argparse.Namespace) -> int:
    kafka = require_kafka(settings, "publish")
    raw = Path(args.file).read_bytes() if args.file else sys.stdin.buffer.read()
    try:
        command = command_from_json(raw, now_ms())
    except PublishError as exc:
        print(f"devreg publish: {exc}", file=sys.stderr)
        return 2

    async def work() -> int:
        topics = (settings.commands_topic, settings.outcomes_topic)
        outcome = await publish(kafka, *topics, command, args.wait)
        _print(outcome)
        return 0 if outcome.accepted else 1

    return _run(settings, "publish", work())


def topics_main(settings: Settings, args: argparse.Namespace) -> int:
    kafka = require_kafka(settings, "topics")

    async def work() -> int:
        _print(await describe(settings, kafka, args.create))
        return 0

    return _run(settings, "topics", work())
