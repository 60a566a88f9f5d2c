"""The arguments of the audit subcommands of `devreg` (their mains: services/audit/commands.py)."""

from __future__ import annotations

import argparse
from typing import Any

from services.audit.commands import (
    Main,
    as_of_main,
    history_main,
    positive_int,
    publish_main,
    rebuild_main,
    replay_main,
    topics_main,
    verify_main,
)
from services.rebuild import parallel as parallel_build


def add_commands(sub: Any) -> dict[str, Main]:
    """Adds the subcommands to `devreg`'s subparsers; returns their mains by name."""
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no progress on stderr")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument(
        "--json", action="store_true", help="JSON even on a terminal (always when piped)"
    )
    times = "ISO-8601 (UTC unless it says otherwise) or ms since the epoch"

    p = sub.add_parser(
        "replay", parents=[quiet, as_json], help="the log's events (a timeline, or NDJSON)"
    )
    p.add_argument("--app", help="only this app's events")
    p.add_argument("--device", help="only this device's events")
    p.add_argument("--channel", help="only events naming this channel")
    p.add_argument("--type", action="append", default=[], help="event tag or class (repeatable)")
    p.add_argument("--since", help=f"events that occurred at or after: {times}")
    p.add_argument("--until", help=f"events that occurred at or before: {times}")
    p.add_argument(
        "--from-offset",
        action="append",
        default=[],
        metavar="[P:]N",
        help="start at offset N (of partition P, or of every partition)",
    )
    p.add_argument("--scan", action="store_true", help="never use the broker's time index")
    p.add_argument("--follow", action="store_true", help="keep tailing the log (Ctrl-C stops)")

    p = sub.add_parser("history", parents=[quiet, as_json], help="a device's events and hash chain")
    p.add_argument("app", help="app id")
    p.add_argument("device", help="device id")

    p = sub.add_parser("as-of", parents=[quiet], help="the registry as it was at a time")
    p.add_argument("time", help=times)
    p.add_argument("--out", help="write the whole registry to this new SQLite file")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--app", help="app id (with --device or --channel)")
    p.add_argument("--device", help="print this device as JSON")
    p.add_argument("--channel", help="print this channel's devices as JSON")

    p = sub.add_parser("rebuild", parents=[quiet], help="a fresh projection from the log")
    p.add_argument("--offline", action="store_true", help="no worker is running: replace it")
    p.add_argument("--wait", type=float, default=15.0, help="seconds for the worker to answer")
    p.add_argument(
        "--processes",
        type=positive_int,
        help="processes folding the log at once, a set of partitions each (default: one per"
        f" core for a log of {parallel_build.PARALLEL_FROM:,} events or more, else one)",
    )

    p = sub.add_parser("verify", parents=[quiet], help="the projection equals a fold of the log")
    p.add_argument("--processes", type=positive_int, help="as for rebuild")

    p = sub.add_parser("publish", help="send a command (JSON) and print its outcome")
    p.add_argument("--file", help="read the command from this file (default: stdin)")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the outcome")

    p = sub.add_parser("topics", help="describe devreg's topics (and create them)")
    p.add_argument("--create", action="store_true", help="create missing topics first")
    return {
        "replay": replay_main,
        "history": history_main,
        "as-of": as_of_main,
        "rebuild": rebuild_main,
        "verify": verify_main,
        "publish": publish_main,
        "topics": topics_main,
    }
